"""Odd input: rows that overflow the network, columns that float32 cannot resolve."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone

from .conftest import small_detectors

RNG = np.random.RandomState(0)
X = RNG.normal(size=(300, 3))
NORMAL = RNG.normal(size=(50, 3))
EXTREMES = [1e300, -1e300, 1e150, np.finfo(np.float64).max]


def _extreme_rows() -> np.ndarray:
    """A normal row with one column at each extreme value, every column in turn."""
    rows = []
    for column in range(X.shape[1]):
        for value in EXTREMES:
            row = NORMAL[0].copy()
            row[column] = value
            rows.append(row)
    return np.array(rows)


@pytest.fixture(scope="module", params=small_detectors(), ids=lambda d: type(d).__name__)
def fitted(request):
    return clone(request.param).fit(X)


def test_rows_with_a_non_finite_score_rank_as_the_most_anomalous_everywhere(fitted):
    odd = _extreme_rows()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        odd_scores = fitted.score_samples(odd)
    assert not np.isnan(odd_scores).any()
    broken = np.isinf(odd_scores) & (odd_scores < 0)
    assert broken.sum() == np.isinf(odd_scores).sum()  # never +inf: "infinitely normal"
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if broken.any():
        assert any(f"{broken.sum()} of {len(odd)} rows got a non-finite anomaly score from "
                   f"{type(fitted).__name__}" in m for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert (fitted.predict(odd)[broken] == -1).all()
        assert (fitted.decision_function(odd)[broken] == -np.inf).all()
        calibration = fitted.calibration_scores_
        assert (fitted.pvalues(odd)[broken] == 1 / (len(calibration) + 1)).all()
        attributions = fitted.explain(odd)
    assert not np.isnan(attributions).any() and (attributions >= 0).all()


def test_the_overflowing_column_explains_a_non_finite_score():
    from sklearn_flowod import FlowDetector

    det = FlowDetector(max_epochs=2, n_neighbors=None, random_state=0).fit(X)
    row = NORMAL[:1].copy()
    row[0, 1] = np.finfo(np.float64).max
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if np.isfinite(det.anomaly_score(row)).all():
            pytest.skip("this network keeps the row finite")
        attributions = det.explain(row)[0]
    assert np.isinf(attributions[1]) and np.isfinite(attributions[[0, 2]]).all()


def test_unstandardised_columns_with_a_large_offset_warn():
    from sklearn_flowod import FlowDetector

    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    X[:, 1] = 1.7e9 + rng.uniform(0, 86_400, size=200)  # Unix seconds within one day
    with pytest.warns(UserWarning, match=r"standardize=False, FlowDetector trains on "
                                         r"column\(s\) 1 in float32"):
        FlowDetector(max_epochs=1, standardize=False, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FlowDetector(max_epochs=1, random_state=0).fit(X)
        FlowDetector(max_epochs=1, standardize=False, random_state=0).fit(X[:, [0, 2]])
