"""Uniform dequantisation of repeated values (``dequantize_ties``)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sklearn_flowod import (
    ContrastiveFlowDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.dequantization import MAX_WIDTH, add_uniform_noise, tie_widths
from sklearn_flowod.training import TrainingConfig, train_module

INN_DETECTORS = [FlowDetector, ContrastiveFlowDetector, LikelihoodRatioDetector,
                 InvertibleOneClassDetector]

small_integers = arrays(np.int64, st.tuples(st.integers(2, 40), st.integers(1, 4)),
                        elements=st.integers(-3, 3))


def test_flags_and_integers_get_unit_bins():
    X = torch.tensor([[0.0, 2.0], [1.0, 3.0], [1.0, 3.0], [0.0, 5.0], [1.0, 5.0], [0.0, 9.0]])
    widths = tie_widths(X)
    assert torch.equal(widths[:, 0], torch.ones(6))  # a balanced flag: exactly MAX_WIDTH sd
    # 2 and 9 occur once (no bin); 3 and 5 are repeated, each 2 away from its nearest other value
    assert torch.equal(widths[:, 1], torch.tensor([0.0, 1.0, 1.0, 2.0, 2.0, 0.0]))


def test_the_mode_of_a_nearly_constant_column_keeps_a_narrow_bin():
    column = torch.zeros(100, 1, dtype=torch.float64)
    column[0] = 1.0  # one rare value, 1 away from the mode but 10 standard deviations
    widths = tie_widths(column)
    assert widths[0, 0] == 0.0
    cap = MAX_WIDTH * column.std(correction=0)
    torch.testing.assert_close(widths[1:, 0], torch.full((99,), float(cap), dtype=torch.float64))


def test_values_seen_once_and_constant_columns_get_no_noise():
    X = torch.column_stack([torch.linspace(0.0, 1.0, 50), torch.full((50,), 4.0)])
    assert torch.equal(tie_widths(X), torch.zeros(50, 2))


@settings(max_examples=50, deadline=None)
@given(small_integers, st.integers(0, 2**31 - 1))
def test_the_noise_keeps_every_value_inside_its_own_bin(values, seed):
    X = torch.as_tensor(values, dtype=torch.float64)
    widths = tie_widths(X)
    noisy = add_uniform_noise(X.clone(), widths, torch.Generator().manual_seed(seed))
    for column in range(X.shape[1]):
        distinct = torch.unique(X[:, column])
        nearest = distinct[(noisy[:, column, None] - distinct).abs().argmin(dim=1)]
        assert torch.equal(nearest, X[:, column])  # no value crosses into a neighbour's bin
    assert torch.all((noisy - X).abs() <= widths / 2)


@settings(max_examples=50, deadline=None)
@given(small_integers)
def test_no_bin_is_wider_than_the_cap(values):
    X = torch.as_tensor(values, dtype=torch.float64)
    cap = MAX_WIDTH * X.std(dim=0, correction=0)
    assert torch.all(tie_widths(X) <= cap * (1 + 1e-12))


@settings(max_examples=50, deadline=None)
@given(small_integers, st.floats(1e-3, 1e3))
def test_the_widths_follow_the_scale_of_each_column(values, scale):
    X = torch.as_tensor(values, dtype=torch.float64)
    torch.testing.assert_close(tie_widths(scale * X), scale * tie_widths(X))


def test_training_batches_get_uniform_noise_of_their_rows_widths():
    rows = torch.zeros(2000, 3)
    widths = torch.tensor([0.0, 1.0, 4.0]).expand(2000, 3).contiguous()
    batches = []

    def recording_loss(module, batch, generator):
        batches.append(batch.detach().clone())
        return module(batch).pow(2).mean()

    module = torch.nn.Linear(3, 1)
    config = TrainingConfig(max_epochs=1, batch_size=500, learning_rate=1e-3)
    train_module(module, recording_loss, rows, config=config,
                 generator=torch.Generator().manual_seed(0), noise_widths=widths)
    assert torch.equal(rows, torch.zeros(2000, 3))  # the training data are untouched
    noise = torch.cat(batches)
    assert torch.equal(noise[:, 0], torch.zeros(2000))
    assert noise[:, 1].abs().max() <= 0.5 and noise[:, 2].abs().max() <= 2.0
    # U[-w/2, w/2] has variance w**2 / 12
    assert noise[:, 2].var().item() == pytest.approx(16 / 12, rel=0.1)


@pytest.mark.parametrize("cls", INN_DETECTORS)
def test_without_repeated_values_the_fit_is_unchanged(cls):
    X = np.random.RandomState(0).normal(size=(120, 3))
    common = {"max_epochs": 2, "random_state": 0, "device": "cpu"}
    plain = cls(dequantize_ties=False, **common).fit(X)
    ties = cls(dequantize_ties=True, **common).fit(X)
    np.testing.assert_array_equal(plain.score_samples(X), ties.score_samples(X))


@pytest.mark.parametrize("cls", INN_DETECTORS)
def test_repeated_values_change_the_fit(cls):
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.randint(0, 2, 120), rng.randint(0, 5, 120), rng.normal(size=120)])
    common = {"max_epochs": 2, "random_state": 0, "device": "cpu"}
    plain = cls(dequantize_ties=False, **common).fit(X)
    ties = cls(dequantize_ties=True, **common).fit(X)
    assert not np.allclose(plain.score_samples(X), ties.score_samples(X))


def test_auxiliary_rows_get_the_noise_of_their_own_bins():
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.randint(0, 2, 120), rng.normal(size=120)])
    X_aux = np.column_stack([rng.randint(0, 3, 60), rng.normal(size=60)])
    common = {"max_epochs": 2, "random_state": 0, "device": "cpu", "noise_std": 0.0}
    plain = ContrastiveFlowDetector(dequantize_ties=False, **common).fit(X, X_aux=X_aux)
    ties = ContrastiveFlowDetector(dequantize_ties=True, **common).fit(X, X_aux=X_aux)
    assert not np.allclose(plain.score_samples(X), ties.score_samples(X))
    assert not hasattr(ties, "_aux_widths")  # a fit temporary
