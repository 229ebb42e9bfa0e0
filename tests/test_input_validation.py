"""Bad input and bad parameters raise scikit-learn's own errors."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

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
        (sp.csr_matrix(X_GOOD), TypeError, "[Ss]parse"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (X_GOOD[:, 0], ValueError, "Expected 2D"),
        (X_GOOD[:1], ValueError, "1 sample"),
    ],
    ids=["nan", "inf", "sparse", "empty", "1d", "one-row"],
)
def test_bad_training_input(detector, bad, error, match):
    with pytest.raises(error, match=match):
        clone(detector).fit(bad)


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
