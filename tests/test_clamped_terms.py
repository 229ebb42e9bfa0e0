"""Clamped loss terms: training steps leave the rows under the floor out of the backward pass."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_flowod import ContrastiveFlowDetector, training_step
from sklearn_flowod.clamped_terms import ClampedRowMean, screen_rows
from sklearn_flowod.coupling_evaluator import folded_view
from sklearn_flowod.detectors.flow import flow_log_density
from sklearn_flowod.training_step import SummedLoss, TrainingStep

from .conftest import compile_eagerly, no_compiler, trained_looking_flow


def _sums(network, x):
    return network(x)


def _row_sums(x):
    return x.sum(dim=1)


def test_clamped_row_mean_is_the_weighted_mean_of_the_clamped_values():
    x = torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.0, 0.0]])
    term = ClampedRowMean(_sums, weight=2.0)
    # row sums 3, -2.5, 0 clamped at -1: 3, -1, 0
    assert float(term(_row_sums, x, torch.tensor(-1.0))) == pytest.approx(2.0 * 2.0 / 3)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=40),
    floor=st.floats(-60.0, 60.0),
    granularity=st.integers(1, 8),
)
def test_screening_keeps_every_row_above_the_floor(values, floor, granularity):
    x = torch.tensor(values, dtype=torch.float64)[:, None]
    floor = torch.tensor(floor, dtype=torch.float64)
    term = ClampedRowMean(_sums, weight=0.5)
    screened = screen_rows(term, _row_sums, x, floor, granularity=granularity)
    rows = screened.rows.tolist()
    assert len(set(rows)) == len(rows)
    assert set(np.flatnonzero(np.array(values) > float(floor))) <= set(rows)
    assert len(rows) == len(values) or len(rows) % granularity == 0
    assert screened.fraction == len(rows) / len(values)
    torch.testing.assert_close(screened.value, term(_row_sums, x, floor))


def test_a_term_without_weight_selects_no_rows():
    screened = screen_rows(ClampedRowMean(_sums, weight=0.0), _row_sums,
                           torch.ones(5, 2), torch.tensor(-10.0))
    assert screened.fraction == 0.0 and screened.rows.numel() == 0


def _flow_term_loss(floor: torch.Tensor, clamped: bool) -> SummedLoss:
    """Eq. (3)'s contrastive term alone, as a clamped term or as a plain function
    (which every step evaluates on all rows)."""
    clamped_term = ClampedRowMean(
        lambda network, x: flow_log_density(network, x) / x.shape[1], 0.7)

    def plain_term(network, x, f):
        return clamped_term(network, x, f)

    term = clamped_term if clamped else plain_term
    return SummedLoss(lambda batch, generator: ((batch, floor),), (term,), row_means=True)


@settings(max_examples=25, deadline=None)
@given(
    quantile=st.floats(-0.1, 1.1),
    rows=st.integers(2, 24),
    compile=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_screened_step_has_the_gradient_of_the_whole_term(quantile, rows, compile, seed):
    batch = torch.randn(rows, 4, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))
    plain, screened = trained_looking_flow(4, seed), trained_looking_flow(4, seed)
    with torch.no_grad():
        values = np.sort(flow_log_density(plain, batch).numpy() / 4)
    # a floor between two rows' values (or below or above all of them)
    position = min(max(quantile, 0.0), 1.0) * (rows - 1)
    low, high = values[math.floor(position)], values[math.ceil(position)]
    floor = (low + high) / 2 if low < high else low - 1e-3
    floor += 1.0 if quantile > 1 else -1.0 if quantile < 0 else 0.0
    floor = torch.tensor(floor, dtype=torch.float64)
    with pytest.MonkeyPatch.context() as patch:
        compile_eagerly(patch)
        expected = TrainingStep(plain, _flow_term_loss(floor, clamped=False), compile=compile)(
            batch, torch.Generator())
        step = TrainingStep(screened, _flow_term_loss(floor, clamped=True), compile=compile,
                            inference_view=folded_view)
        value = step(batch, torch.Generator())
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-10)
    for a, b in zip(plain.parameters(), screened.parameters(), strict=True):
        if a.requires_grad:  # no gradient accumulated: zero
            gradient = torch.zeros_like(b) if b.grad is None else b.grad
            torch.testing.assert_close(gradient, a.grad, rtol=1e-8, atol=1e-10)


def test_an_uncompiled_step_skips_the_backward_pass_of_rows_all_under_the_floor():
    batch = torch.randn(8, 4, dtype=torch.float64)
    for floor, backpropagated in [(1e9, 0), (-1e9, 8)]:
        module = trained_looking_flow(4, 0)
        step = TrainingStep(module, _flow_term_loss(torch.tensor(floor), clamped=True))
        value = step(batch, torch.Generator())
        assert (step.clamped_rows, step.clamped_rows_backpropagated) == (8, backpropagated)
        assert all((p.grad is not None) == bool(backpropagated) for p in module.parameters()
                   if p.requires_grad)
        if not backpropagated:  # every row clamped: the term is the floor
            assert float(value) == pytest.approx(0.7 * floor)


def test_screening_pauses_longer_while_it_selects_every_row(monkeypatch):
    compile_eagerly(monkeypatch)
    monkeypatch.setattr(training_step, "SCREENING_PAUSE", 2)
    monkeypatch.setattr(training_step, "MAX_SCREENING_PAUSE", 4)
    screened_at, step_number = [], [0]
    original = training_step.screen_rows

    def recording(*args, **kwargs):
        screened_at.append(step_number[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(training_step, "screen_rows", recording)
    batch = torch.randn(8, 4, dtype=torch.float64)
    floor = torch.tensor(-1e9, dtype=torch.float64)  # every row above it
    step = TrainingStep(trained_looking_flow(4, 0), _flow_term_loss(floor, clamped=True),
                        compile=True)
    for step_number[0] in range(15):
        if step_number[0] == 13:  # every row under it: screened at once, no pause
            floor.fill_(1e9)
        step(batch, torch.Generator())
    # pauses of 2, 4, 4 steps, then none after a screening that left rows out
    assert screened_at == [0, 3, 8, 13, 14]
    assert step.clamped_rows == 15 * 8
    assert step.clamped_rows_backpropagated == 13 * 8


def test_rows_on_an_accelerator_are_not_screened():
    loss = _flow_term_loss(torch.tensor(0.0), clamped=True)
    step = TrainingStep(trained_looking_flow(4, 0), loss)
    assert step._screen(0, (torch.empty(8, 4, device="meta"), torch.tensor(0.0)), 8) is None


@pytest.mark.parametrize(
    "compile",
    [False, pytest.param(True, marks=pytest.mark.skipif(
        no_compiler(), reason="torch.compile needs a C++ compiler on a CPU"))],
)
def test_the_contrastive_flow_trains_alike_without_the_clamped_rows(compile, monkeypatch):
    """Eq. (3): auxiliary samples under the clamp have no gradient; leaving them out
    of the backward pass changes the training only by rounding (not at all
    uncompiled)."""
    # correlated features, whose shuffled copies are less likely: with this clamp
    # some of the auxiliary rows of a batch are above it, some below
    rng = np.random.RandomState(0)
    z, noise = rng.normal(size=(128, 1)), rng.normal(size=(128, 3))
    X = np.c_[z, z + 0.3 * noise[:, :1], 0.3 * noise[:, 1:2] - z, noise[:, 2:]]
    params = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 3, "batch_size": 32, "clamp": -4.0,
              "validation_fraction": None, "compile": compile, "random_state": 0}
    if compile:  # parts of 8 rows: a screened batch is evaluated in some of them
        monkeypatch.setattr(training_step, "MICRO_BATCH_ROWS", 8)
        monkeypatch.setattr(training_step, "MIN_MICRO_BATCH_BYTES", 0)
    counted = []
    original = TrainingStep._count_clamped

    def recording(self, rows, backpropagated):
        counted.append((rows, backpropagated))
        original(self, rows, backpropagated)

    monkeypatch.setattr(TrainingStep, "_count_clamped", recording)
    left_out = ContrastiveFlowDetector(**params).fit(X)
    monkeypatch.setattr(training_step, "ClampedRowMean", type("NotClamped", (), {}))
    whole = ContrastiveFlowDetector(**params).fit(X)
    assert any(backpropagated < rows for rows, backpropagated in counted)
    assert any(backpropagated > 0 for rows, backpropagated in counted)
    np.testing.assert_allclose(left_out.loss_curve_, whole.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(left_out.score_samples(X), whole.score_samples(X), rtol=1e-3)
    if not compile:  # a skipped backward pass would only have added zeros
        np.testing.assert_array_equal(left_out.score_samples(X), whole.score_samples(X))
