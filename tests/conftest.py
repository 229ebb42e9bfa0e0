"""Shared fixtures and small training budgets for the test suite."""

import os
import shutil

import numpy as np
import pytest
import sklearn
import torch
from hypothesis import settings
from hypothesis import strategies as st

from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
    UniformBox,
)
from sklearn_flowod.networks import build_inn

#: Small networks and few epochs: enough to test behaviour, fast on 2 cores.
SMALL_BUDGET = {"n_blocks": 2, "hidden_size": 16, "max_epochs": 5, "device": "cpu"}
SMALL_SVDD = {"hidden_sizes": (16,), "representation_size": 8, "max_epochs": 5, "device": "cpu"}


#: Shapes of the small flows the evaluators are checked on (hypothesis strategies).
FLOW_SHAPES = {
    "n_features": st.integers(2, 9),
    "n_blocks": st.integers(1, 4),
    "hidden_size": st.integers(1, 12),
    "soft": st.booleans(),
    "n_rows": st.integers(1, 40),
    "seed": st.integers(0, 2**16),
}


def trained_looking_inn(n_features, n_blocks, hidden_size, soft, seed):
    """A float64 flow whose every parameter is away from its initial value."""
    inn = build_inn(n_features, n_blocks=n_blocks, hidden_size=hidden_size,
                    affine_clamping=2.0, soft_permutation=soft, seed=seed).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in inn.parameters():
            if parameter.requires_grad:
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator,
                                                 dtype=parameter.dtype))
    return inn.eval()


def no_compiler() -> bool:
    """Whether this machine lacks the C++ compiler ``torch.compile`` needs on a CPU."""
    return not any(shutil.which(cc) for cc in ("g++", "c++", "clang++", "cc", "gcc"))


def small_detectors():
    """One quickly trained instance of every detector of the package."""
    return [
        InvertibleOneClassDetector(**SMALL_BUDGET, random_state=0),
        DeepSVDDDetector(**SMALL_SVDD, random_state=0),
        DeepSVDDDetector(**SMALL_SVDD, objective="soft-boundary", warm_up_epochs=2,
                         pretrain_epochs=2, random_state=0),
        FlowDetector(**SMALL_BUDGET, random_state=0),
        ContrastiveFlowDetector(**SMALL_BUDGET, random_state=0),
        # a broad general distribution: the one the likelihood ratio is made for
        LikelihoodRatioDetector(**SMALL_BUDGET, auxiliary=UniformBox(margin=1.0), random_state=0),
        LikelihoodRatioDetector(**SMALL_BUDGET, auxiliary=UniformBox(margin=1.0),
                                outlier_weight=1.0, random_state=0),
    ]


def same_params(first, second) -> bool:
    """Equal parameters, comparing estimator-valued ones by type and parameters."""
    a, b = first.get_params(deep=False), second.get_params(deep=False)
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if hasattr(value, "get_params"):
            if type(value) is not type(other) or not same_params(value, other):
                return False
        elif value != other:
            return False
    return True


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Train on one thread: small networks are fastest so, busy machine or not.

    Session-scoped, so that it also holds for module-scoped fixtures.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def blobs():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    X_out = rng.normal(loc=6.0, size=(30, 4))
    return X, X_out


@pytest.fixture
def labelled_blobs():
    """Inliers around 50 and uniform outliers, labelled +1/-1 like predict."""
    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(size=(300, 3)) * 5.0 + 50.0, rng.uniform(0.0, 100.0, size=(30, 3))]
    y = np.r_[np.ones(300, dtype=int), -np.ones(30, dtype=int)]
    return X, y


@pytest.fixture
def routing():
    """scikit-learn's metadata routing, switched on for one test."""
    sklearn.set_config(enable_metadata_routing=True)
    yield
    sklearn.set_config(enable_metadata_routing=False)


# Property tests explore new examples locally; on CI they replay a fixed sequence.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
