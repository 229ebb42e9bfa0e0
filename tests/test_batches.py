"""Scoring batches are sized by scikit-learn's ``working_memory``."""

import warnings

import numpy as np
import pytest
import sklearn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_flowod import FlowDetector
from sklearn_flowod._engine.batches import CPU_MAX_ROWS, scoring_rows

from .conftest import SMALL_BUDGET

CPU = torch.device("cpu")


def _mlp(width):
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 4))


@settings(max_examples=50, deadline=None)
@given(
    working_memory=st.floats(1e-3, 4096.0),
    width=st.integers(1, 512),
    n_rows=st.integers(0, 100_000),
)
def test_batches_fit_in_the_working_memory(working_memory, width, n_rows):
    module = _mlp(width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # less than one row's worth: one row, with a warning
        with sklearn.config_context(working_memory=working_memory):
            rows = scoring_rows(module, 4, n_rows, CPU)
        with sklearn.config_context(working_memory=2 * working_memory):
            more = scoring_rows(module, 4, n_rows, CPU)
    assert 1 <= rows <= max(n_rows, 1)
    assert rows <= CPU_MAX_ROWS  # on a CPU a batch stays in the caches
    # a row's working set holds at least every layer's float64 outputs
    assert rows == 1 or rows * 8 * (width + 4) <= working_memory * 2**20
    assert rows <= more


def test_a_large_working_memory_gives_the_cpu_cap_or_every_row():
    module = _mlp(8)
    with sklearn.config_context(working_memory=1024):
        assert scoring_rows(module, 4, 10**6, CPU) == CPU_MAX_ROWS
        assert scoring_rows(module, 4, 100, CPU) == 100
        # no CPU cap on an accelerator
        assert scoring_rows(module, 4, 10**6, torch.device("cuda")) > CPU_MAX_ROWS


def test_a_tiny_working_memory_gives_one_row_batches():
    module = _mlp(8)
    with sklearn.config_context(working_memory=1e-6), pytest.warns(
        UserWarning, match="working_memory"
    ):
        assert scoring_rows(module, 4, 100, CPU) == 1


def test_wider_networks_get_fewer_rows():
    with sklearn.config_context(working_memory=1):
        narrow = scoring_rows(_mlp(8), 4, 10**6, CPU)
        wide = scoring_rows(_mlp(4096), 4, 10**6, CPU)
    assert wide < narrow


def test_scores_follow_the_working_memory_without_changing():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    det = FlowDetector(**SMALL_BUDGET, random_state=0).fit(X)
    with sklearn.config_context(working_memory=0.004):
        rows = scoring_rows(det.module_, 4, 300, CPU)
        small = det.score_samples(X)
    assert 1 < rows < 300  # several batches, the last one partial
    np.testing.assert_allclose(small, det.score_samples(X), rtol=1e-12, atol=1e-12)
