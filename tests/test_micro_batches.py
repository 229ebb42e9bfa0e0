"""Micro-batches: compiled CPU steps split large batches of row-mean losses."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sklearn_flowod import (
    ContrastiveFlowDetector,
    FlowDetector,
    LikelihoodRatioDetector,
    training_step,
)
from sklearn_flowod.training_step import SummedLoss, TrainingStep, micro_batches

from .conftest import compile_eagerly, no_compiler


@pytest.mark.parametrize(
    ("rows", "features", "dtype", "parts"),
    [
        (4096, 32, torch.float32, 2),
        (8192, 32, torch.float32, 4),
        (6144, 32, torch.float32, 3),
        (5000, 32, torch.float32, 2),  # two parts of 2,500 rows
        (5001, 32, torch.float32, 1),  # no equal parts of at least 2,048 rows
        (4095, 32, torch.float32, 1),
        (4096, 16, torch.float32, 2),  # a part of 128 KiB: the smallest split
        (4096, 15, torch.float32, 1),
        (4096, 8, torch.float32, 1),
        (4096, 8, torch.float64, 2),
        (256, 512, torch.float32, 1),
    ],
)
def test_micro_batches_rule(rows, features, dtype, parts):
    assert micro_batches(torch.empty(rows, features, dtype=dtype)) == parts


def test_batches_on_an_accelerator_are_not_split():
    assert micro_batches(torch.empty(8192, 64, device="meta")) == 1


def _row_mean_loss(weight: float) -> SummedLoss:
    """Two row-mean terms; the second takes a shuffled copy and a scalar tensor."""

    def inputs(batch, generator):
        rows = torch.randperm(batch.shape[0], generator=generator)
        return (batch,), (batch[rows] + 1.0, torch.tensor(weight, dtype=batch.dtype))

    def first(module, x):
        return module(x).pow(2).mean() + 0.5

    def second(module, y, w):
        return -w * module(y).tanh().mean()

    return SummedLoss(inputs, (first, second), row_means=True)


def _module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()


@pytest.fixture
def eager_compile(monkeypatch):
    compile_eagerly(monkeypatch)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), weight=st.floats(0.0, 3.0), seed=st.integers(0, 2**16))
def test_micro_batched_gradients_equal_the_whole_batch_gradient(rows, weight, seed):
    with pytest.MonkeyPatch.context() as patch:
        compile_eagerly(patch)
        loss = _row_mean_loss(weight)
        batch = torch.randn(rows, 3, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed))
        whole, split = _module(), _module()
        expected = TrainingStep(whole, loss)(batch, torch.Generator().manual_seed(seed))
        value = TrainingStep(split, loss, compile=True)(batch,
                                                       torch.Generator().manual_seed(seed))
    assert float(value) == pytest.approx(float(expected), rel=1e-12, abs=1e-12)
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def _recording(loss: SummedLoss, seen: list) -> SummedLoss:
    def record(term):
        def recorded(module, *args):
            seen.append(args[0].shape[0])
            return term(module, *args)
        return recorded

    return SummedLoss(loss.inputs, [record(term) for term in loss.terms],
                      row_means=loss.row_means)


def test_only_compiled_steps_of_row_mean_losses_are_split(eager_compile):
    batch = torch.randn(12, 3, dtype=torch.float64)
    for row_means, compile, sizes in [(True, True, [4] * 6), (True, False, [12, 12]),
                                      (False, True, [12, 12])]:
        seen = []
        loss = _row_mean_loss(1.0)
        loss.row_means = row_means
        TrainingStep(_module(), _recording(loss, seen), compile=compile)(
            batch, torch.Generator().manual_seed(0))
        assert seen == sizes


@pytest.mark.parametrize(
    "detector",
    [FlowDetector(random_state=0), ContrastiveFlowDetector(random_state=0),
     LikelihoodRatioDetector(outlier_weight=0.0, random_state=0)],
    ids=lambda d: type(d).__name__,
)
def test_the_flows_losses_are_row_means(detector, monkeypatch):
    """Every loss the fit trains on averages over equal row blocks, as it declares."""
    checked = {}
    original = TrainingStep.__call__

    def checking(self, batch, generator):
        if id(self.loss) not in checked:
            checked[id(self.loss)] = self.loss.row_means
            state = generator.get_state()
            with torch.no_grad():
                arguments = self.loss.inputs(batch, generator)
                for term, args in zip(self.loss.terms, arguments, strict=True):
                    parts = list(training_step._split_rows(args, batch.shape[0], 3))
                    mean_of_parts = sum(term(self.module, *part) for part in parts) / 3
                    torch.testing.assert_close(mean_of_parts, term(self.module, *args))
            generator.set_state(state)
        return original(self, batch, generator)

    monkeypatch.setattr(TrainingStep, "__call__", checking)
    X = np.random.RandomState(0).normal(size=(96, 4))
    detector.set_params(n_blocks=2, hidden_size=8, max_epochs=2, batch_size=48,
                        validation_fraction=None).fit(X)
    assert checked and all(checked.values())


@pytest.mark.skipif(no_compiler(), reason="torch.compile needs a C++ compiler on a CPU")
def test_a_compiled_flow_trains_on_micro_batches_like_on_whole_batches(monkeypatch):
    X = np.random.RandomState(0).normal(size=(96, 4))
    params = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 3, "batch_size": 32,
              "validation_fraction": None, "compile": True, "random_state": 0}
    whole = FlowDetector(**params).fit(X)
    seen = []
    original = training_step._split_rows

    def recording(args, n_rows, parts):
        seen.append(parts)
        return original(args, n_rows, parts)

    monkeypatch.setattr(training_step, "MICRO_BATCH_ROWS", 8)
    monkeypatch.setattr(training_step, "MIN_MICRO_BATCH_BYTES", 0)
    monkeypatch.setattr(training_step, "_split_rows", recording)
    split = FlowDetector(**params).fit(X)
    assert seen and set(seen) == {4}
    np.testing.assert_allclose(split.loss_curve_, whole.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(split.score_samples(X), whole.score_samples(X), rtol=1e-4)
