"""A fit that raises leaves none of its temporary tensors on the detector."""

import numpy as np
import pytest
import torch

from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FeaturePermutation,
    LikelihoodRatioDetector,
)

from .conftest import SMALL_BUDGET, SMALL_SVDD

X = np.random.RandomState(0).normal(size=(60, 2))
TEMPORARIES = ("_aux_data", "_clamp", "_outlier_data", "_radius_data")


class TrainingFailed(RuntimeError):
    pass


class FailingSample(FeaturePermutation):
    """A generator that fits, then fails when training asks it for a batch."""

    def sample(self, batch, generator):
        raise TrainingFailed("no auxiliary batch")


def failing_after_training(cls):
    """``cls`` whose training loop ends with an error (after training the network)."""

    def _train(self, *args, **kwargs):
        super(subclass, self)._train(*args, **kwargs)
        raise TrainingFailed("training failed")

    subclass = type(f"Failing{cls.__name__}", (cls,), {"_train": _train})
    return subclass


def assert_no_temporaries(detector):
    state = vars(detector)
    assert not [name for name in TEMPORARIES if name in state]
    tensors = [name for name, value in state.items()
               if isinstance(value, torch.Tensor)
               or (isinstance(value, tuple) and any(isinstance(v, torch.Tensor) for v in value))]
    assert not tensors


@pytest.mark.parametrize("clamp", ["auto", 0.0])
def test_contrastive_flow_whose_generator_fails(clamp):
    det = ContrastiveFlowDetector(auxiliary=FailingSample(), clamp=clamp, **SMALL_BUDGET)
    with pytest.raises(TrainingFailed):
        det.fit(X)
    assert_no_temporaries(det)


@pytest.mark.parametrize(
    ("detector", "fit_params"),
    [
        (failing_after_training(ContrastiveFlowDetector)(**SMALL_BUDGET), {"X_aux": X[:30] + 1}),
        (failing_after_training(LikelihoodRatioDetector)(outlier_weight=1.0, **SMALL_BUDGET),
         {"X_aux": X[:30] + 1}),
        (failing_after_training(DeepSVDDDetector)(objective="soft-boundary", **SMALL_SVDD), {}),
    ],
    ids=["contrastive-X_aux", "likelihood-ratio", "deep-svdd"],
)
def test_training_that_raises(detector, fit_params):
    with pytest.raises(TrainingFailed):
        detector.fit(X, **fit_params)
    assert_no_temporaries(detector)


def test_aux_data_that_fails_validation():
    X_aux = X[:30].copy()
    X_aux[0, 0] = np.nan
    det = ContrastiveFlowDetector(**SMALL_BUDGET)
    with pytest.raises(ValueError, match="NaN"):
        det.fit(X, X_aux=X_aux)
    assert_no_temporaries(det)
