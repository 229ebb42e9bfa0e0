"""Shared fixtures and small training budgets for the test suite."""

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
)

#: Small networks and few epochs: enough to test behaviour, fast on 2 cores.
SMALL_BUDGET = {"n_blocks": 2, "hidden_size": 16, "max_epochs": 5, "device": "cpu"}
SMALL_SVDD = {"hidden_sizes": (16,), "representation_size": 8, "max_epochs": 5, "device": "cpu"}


def small_detectors():
    """One quickly trained instance of every detector of the package."""
    return [
        InvertibleOneClassDetector(**SMALL_BUDGET, random_state=0),
        DeepSVDDDetector(**SMALL_SVDD, random_state=0),
        DeepSVDDDetector(**SMALL_SVDD, objective="soft-boundary", warm_up_epochs=2,
                         pretrain_epochs=2, random_state=0),
        FlowDetector(**SMALL_BUDGET, random_state=0),
        ContrastiveFlowDetector(**SMALL_BUDGET, random_state=0),
    ]


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


# Property tests explore new examples locally; on CI they replay a fixed sequence.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
