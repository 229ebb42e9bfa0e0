"""Known anomalies: y = -1 rows used by every detector when known_anomaly_weight is set."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)

DETECTORS = [FlowDetector, ContrastiveFlowDetector, InvertibleOneClassDetector,
             LikelihoodRatioDetector, DeepSVDDDetector]
FAST = {"max_epochs": 15, "random_state": 0}
#: Where the known anomalies of the toy data lie: a corner the normal rows seldom reach.
CORNER = np.array([1.5, 1.5])
#: Training long enough for the push to show (early stopping reads normal rows only).
FULL = {"max_epochs": 40, "n_iter_no_change": None, "random_state": 0}


def _toy(n_normal=300, n_known=12, seed=0):
    rng = np.random.RandomState(seed)
    normal = rng.normal(size=(n_normal, 2))
    known = CORNER + 0.2 * rng.normal(size=(n_known, 2))
    X = np.vstack([normal, known])
    y = np.r_[np.ones(n_normal, int), -np.ones(n_known, int)]
    return X, y


@pytest.mark.parametrize("cls", DETECTORS)
def test_by_default_y_is_ignored_exactly_as_before(cls):
    X, y = _toy()
    with_y = cls(**FAST).fit(X, y)
    without = cls(**FAST).fit(X)
    assert with_y.n_known_anomalies_ == without.n_known_anomalies_ == 0
    np.testing.assert_array_equal(with_y.score_samples(X), without.score_samples(X))


@pytest.mark.parametrize("cls", DETECTORS)
def test_labels_without_a_known_anomaly_fit_the_one_class_model(cls):
    X, y = _toy()
    normal = X[y == 1]
    labelled = cls(known_anomaly_weight=1.0, **FAST).fit(normal, np.ones(len(normal), int))
    plain = cls(**FAST).fit(normal)
    assert labelled.n_known_anomalies_ == 0
    np.testing.assert_array_equal(labelled.score_samples(X), plain.score_samples(X))


@pytest.mark.parametrize("cls", DETECTORS)
def test_known_anomalies_raise_the_score_where_they_lie(cls):
    X, y = _toy()
    params = {} if cls is DeepSVDDDetector else {"n_neighbors": None}  # the training alone
    plain = cls(**params, **FULL).fit(X[y == 1])
    labelled = cls(known_anomaly_weight=1.0, **params, **FULL).fit(X, y)
    assert labelled.n_known_anomalies_ == 12
    normal_rows = X[y == 1]
    # the known region's score, relative to the normal rows' median, goes up
    def lift(det):
        scores = det.anomaly_score(np.vstack([CORNER[None], normal_rows]))
        return scores[0] - np.median(scores[1:])
    assert lift(labelled) > lift(plain)


@pytest.mark.parametrize("labels", [np.r_[np.zeros(300), np.ones(12)], np.full(312, 2)])
def test_labels_other_than_minus_one_and_one_are_refused_with_the_conversion(labels):
    X, _ = _toy()
    with pytest.raises(ValueError, match=r"np\.where\(y == 1, -1, 1\)"):
        FlowDetector(known_anomaly_weight=1.0, **FAST).fit(X, labels)


def test_only_known_anomalies_are_refused():
    X, _ = _toy()
    with pytest.raises(ValueError, match="All 312 rows of X are marked -1"):
        ContrastiveFlowDetector(known_anomaly_weight=1.0, **FAST).fit(X, -np.ones(312))


def test_y_of_another_length_is_refused():
    X, y = _toy()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FlowDetector(known_anomaly_weight=1.0, **FAST).fit(X, y[:-1])


@pytest.mark.parametrize("cls", DETECTORS)
def test_the_threshold_and_calibration_come_from_normal_rows_only(cls):
    X, y = _toy()
    det = cls(known_anomaly_weight=1.0, **FAST).fit(X, y)
    n_normal = int((y == 1).sum())
    assert det.calibration_scores_.shape == (det._n_validation(n_normal),)
    pvalues = det.pvalues(X)
    assert np.all((pvalues > 0) & (pvalues <= 1))
    attributions = det.explain(X[:5])
    assert attributions.shape == (5, 2) and np.all(attributions >= 0)


@pytest.mark.parametrize(("cls", "params", "keeps_known"), [
    (ContrastiveFlowDetector, {}, True),
    (ContrastiveFlowDetector, {"n_neighbors": None}, False),
    (DeepSVDDDetector, {}, False)])
def test_a_model_fitted_with_known_anomalies_pickles(cls, params, keeps_known):
    X, y = _toy()
    det = cls(known_anomaly_weight=1.0, **params, **FAST).fit(X, y)
    saved = pickle.dumps(det)
    again = pickle.loads(saved)
    np.testing.assert_array_equal(again.score_samples(X), det.score_samples(X))
    # the neighbour score keeps the known anomalies; without it no known anomaly
    # is kept, raw or standardised, in float64 or float32
    known = X[y == -1]
    if keeps_known:
        assert again.neighbours_.known_inputs.rows.shape == known.shape
        return
    for rows in (known, (known - det.mean_) / det.scale_):
        for dtype in (np.float64, np.float32):
            assert not any(value.tobytes() in saved for value in rows.astype(dtype).ravel())


@pytest.mark.parametrize("cls", [FlowDetector, ContrastiveFlowDetector,
                                 InvertibleOneClassDetector, LikelihoodRatioDetector])
def test_known_anomalies_join_the_neighbour_score(cls):
    X, y = _toy()
    normal = X[y == 1]
    plain = cls(**FAST).fit(normal)
    # weight 0: the one-class training, the known anomalies in the score only
    known = cls(known_anomaly_weight=0.0, **FAST).fit(X, y)
    assert plain.neighbours_.center.shape == (3,) and known.neighbours_.center.shape == (5,)
    for ours, theirs in zip(known.module_.state_dict().values(),
                            plain.module_.state_dict().values(), strict=True):
        np.testing.assert_array_equal(ours.cpu().numpy(), theirs.cpu().numpy())
    probes = CORNER + 0.2 * np.random.RandomState(1).normal(size=(50, 2))

    def share_above(det):  # the share of normal rows scored more anomalous than a probe
        normal_scores = det.score_samples(normal)
        return np.mean(normal_scores[None, :] < det.score_samples(probes)[:, None], axis=1)

    assert np.median(share_above(known)) < np.median(share_above(plain))
    # a row far from every normal row and every known anomaly is still flagged
    unlike = np.array([[-5.0, -5.0], [5.0, -5.0], [-5.0, 5.0]])
    assert np.all(known.predict(unlike) == -1)


def _frame(seed=0):
    X, y = _toy(seed=seed)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1],
                          "kind": np.where(X[:, 0] > 0, "card", "transfer")})
    return frame, y


def _pipeline(**params):
    columns = ColumnTransformer([("num", StandardScaler(), ["a", "b"]),
                                 ("cat", OneHotEncoder(sparse_output=False), ["kind"])])
    return make_pipeline(columns, FlowDetector(**{**FAST, **params}))


def test_labelled_rows_pass_through_a_column_transformer_pipeline():
    frame, y = _frame()
    pipeline = _pipeline(known_anomaly_weight=1.0).fit(frame, y)
    detector = pipeline[-1]
    assert detector.n_known_anomalies_ == 12
    assert detector.n_features_in_ == 4  # two scaled numbers and the one-hot category
    # the detector's own standardisation comes from the transformed normal rows alone
    normal = pipeline[0].transform(frame[y == 1])
    np.testing.assert_allclose(detector.mean_, normal.mean(axis=0), atol=1e-12)


def test_grid_search_fits_on_the_training_folds_labels_only():
    frame, y = _frame()
    held_out_known = []

    def held_out_rows_never_reached_fit(pipeline, X_test, y_test):
        detector = pipeline[-1]
        training = ~frame.index.isin(X_test.index)
        # the fold's known anomalies, and no other, reached the detector ...
        assert detector.n_known_anomalies_ == int((y[training] == -1).sum())
        # ... and its normal rows are the training fold's, transformed by the fitted steps
        normal = pipeline[0].transform(frame[training & (y == 1)])
        np.testing.assert_allclose(detector.mean_, normal.mean(axis=0), atol=1e-12)
        held_out_known.append(int((y_test == -1).sum()))
        return 0.0

    search = GridSearchCV(_pipeline(known_anomaly_weight=1.0),
                          {"flowdetector__known_anomaly_weight": [1.0]},
                          cv=KFold(3, shuffle=True, random_state=0),
                          scoring=held_out_rows_never_reached_fit, error_score="raise")
    search.fit(frame, y)
    assert sum(held_out_known) == 12 and min(held_out_known) > 0  # every fold held some out
