"""Bad input and bad parameters raise scikit-learn's own errors."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sklearn
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from .conftest import small_detectors

DETECTORS = small_detectors()
pytestmark = pytest.mark.parametrize(
    "detector", DETECTORS, ids=[type(d).__name__ for d in DETECTORS]
)

X_GOOD = np.random.RandomState(0).normal(size=(50, 3))


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.where(np.eye(50, 3) > 0, np.nan, X_GOOD), ValueError, "NaN"),
        (np.where(np.eye(50, 3) > 0, np.inf, X_GOOD), ValueError, "infinity"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (X_GOOD[:, 0], ValueError, "Expected 2D"),
        (X_GOOD[:1], ValueError, "1 sample"),
    ],
    ids=["nan", "inf", "empty", "1d", "one-row"],
)
def test_bad_training_input(detector, bad, error, match):
    with pytest.raises(error, match=match):
        clone(detector).fit(bad)


@pytest.mark.parametrize(
    ("empty", "match"),
    [(pd.DataFrame(), "0 sample"), (pd.DataFrame(columns=["a", "b"]), "0 sample"),
     (pd.DataFrame(index=range(5)), "0 feature")],
    ids=["no-rows-no-columns", "no-rows", "no-columns"],
)
def test_empty_dataframe_is_reported_as_empty(detector, empty, match):
    with pytest.raises(ValueError, match=match):
        clone(detector).fit(empty)


def test_sparse_input_fits_and_scores_like_dense(detector):
    X = np.where(np.abs(X_GOOD) < 0.5, 0.0, X_GOOD)
    dense = clone(detector).fit(X)
    sparse = clone(detector).fit(sp.csc_matrix(X))
    expected = dense.score_samples(X)
    np.testing.assert_array_equal(sparse.score_samples(sp.csr_matrix(X)), expected)
    # many scoring batches: every one is densified on its own
    with sklearn.config_context(working_memory=1e-4), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_chunk_n_rows: less than one row fits
        np.testing.assert_array_equal(sparse.score_samples(sp.csr_matrix(X)),
                                      dense.score_samples(X))
        np.testing.assert_array_equal(sparse.predict(sp.coo_matrix(X)), dense.predict(X))


def test_one_hot_pipeline_output_is_accepted(detector):
    frame = pd.DataFrame({"colour": np.tile(["red", "green", "blue", "grey", "pink"], 10),
                          "size": X_GOOD[:, 0]})
    encode = ColumnTransformer([("onehot", OneHotEncoder(), ["colour"])],
                               remainder="passthrough", sparse_threshold=1.0)
    assert sp.issparse(clone(encode).fit_transform(frame))
    pipe = make_pipeline(encode, clone(detector)).fit(frame)
    assert pipe.score_samples(frame).shape == (50,)


def test_wrong_feature_count_at_scoring(detector):
    det = clone(detector).fit(X_GOOD)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(X_GOOD[:, :2])


def test_unfitted_detector_refuses_to_score(detector):
    with pytest.raises(NotFittedError):
        clone(detector).predict(X_GOOD)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"contamination": 0.7}, "contamination"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"device": "tpu"}, "tpu"),
    ],
)
def test_bad_parameters(detector, params, match):
    with pytest.raises(ValueError, match=match):
        clone(detector).set_params(**params).fit(X_GOOD)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error(detector):
    with pytest.raises(ValueError, match="CUDA is not available"):
        clone(detector).set_params(device="cuda").fit(X_GOOD)


def test_views_of_any_layout_are_accepted(detector):
    reversed_rows = X_GOOD[::-1]
    read_only = X_GOOD.copy()
    read_only.flags.writeable = False
    det = clone(detector).fit(reversed_rows)
    expected = det.score_samples(np.ascontiguousarray(X_GOOD))
    np.testing.assert_allclose(det.score_samples(reversed_rows)[::-1], expected)
    np.testing.assert_allclose(det.score_samples(read_only), expected)
    np.testing.assert_allclose(det.score_samples(np.asfortranarray(X_GOOD)), expected)


@pytest.mark.parametrize("n_rows", [2, 3, 5])
def test_too_few_rows_to_fit_is_refused_with_the_minimum(detector, n_rows):
    with pytest.raises(ValueError, match=(f"n_samples={n_rows} is too few; "
                                          f"{type(detector).__name__} needs at least 6 "
                                          r"\(5 to train on and 1 held out")):
        clone(detector).fit(X_GOOD[:n_rows])


@pytest.mark.parametrize("validation_fraction", [None, 0.15, 0.4])
def test_the_stated_minimum_fits_without_a_library_warning(detector, validation_fraction):
    # the minimum: MIN_TRAINING_ROWS rows left to train on beside the held-out ones
    from sklearn_flowod.base import MIN_TRAINING_ROWS

    est = clone(detector).set_params(validation_fraction=validation_fraction)
    held_out = {None: 0, 0.15: 1, 0.4: 3}[validation_fraction]
    minimum = MIN_TRAINING_ROWS + held_out
    with pytest.raises(ValueError, match=f"needs at least {minimum} "):
        clone(est).fit(X_GOOD[: minimum - 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X_GOOD[:minimum])
        labels = est.predict(X_GOOD)
    # only the neighbour score's own warning: fewer reference rows than n_neighbors + 1
    messages = [str(w.message) for w in caught]
    assert all("n_neighbors_=" in message for message in messages), messages
    assert set(labels) <= {-1, 1}
    assert np.isfinite(est.score_samples(X_GOOD)).all()
