"""The one training loop: budgets, validation checks, early stopping, the
divergence guard, the learning-rate schedule and the progress display."""

import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from torch import nn

from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.callbacks import (
    Callback,
    CosineSchedule,
    EarlyStopping,
    ProgressBar,
    progress_description,
)
from sklearn_flowod.training import (
    MAX_DIVERGENCE_RETRIES,
    VALIDATION_INTERVAL,
    TrainingConfig,
    TrainingDivergedError,
    TrainingHistory,
    train_module,
)

from .conftest import no_compiler

LEARNING_RATE = 0.05


# --------------------------------------------------------------------------- #
# A small regression problem and a recording callback
# --------------------------------------------------------------------------- #
def _rows(n_rows=64, seed=0):
    """Rows ``[id, x1, x2, x3, y]`` with ``y`` linear in ``x``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return torch.cat([torch.arange(n_rows, dtype=torch.float32)[:, None], x, y[:, None]], dim=1)


def _module():
    module = nn.Linear(3, 1)
    with torch.no_grad():  # the same start in every test, whatever the global generator
        module.weight.zero_()
        module.bias.zero_()
    return module


def _loss(module, batch, generator):
    return (module(batch[:, 1:4]).squeeze(1) - batch[:, 4]).square().mean()


def _config(**options):
    return TrainingConfig(**{"max_epochs": 5, "batch_size": 16,
                             "learning_rate": LEARNING_RATE, **options})


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Recorder(Callback):
    """Records what the loop shows its callbacks."""

    def __init__(self):
        self.began = self.ended = 0
        self.steps = []  # (epoch, steps done, learning rate) before every step
        self.checks = []  # (epoch, steps done, epochs done, validation loss)
        self.weights_at_check = []
        self.weights_at_step = []

    def on_train_begin(self, state):
        self.began += 1

    def on_step_begin(self, state):
        self.steps.append((state.epoch, state.history.n_steps,
                           state.optimizer.param_groups[0]["lr"]))
        self.weights_at_step.append(_weights(state.module))

    def on_check(self, state):
        history = state.history
        self.checks.append((state.epoch, history.n_steps, history.n_epochs,
                            state.validation_loss))
        self.weights_at_check.append(_weights(state.module))

    def on_train_end(self, state):
        self.ended += 1


def _train(rows=None, X_val=None, loss=_loss, callbacks=(), module=None, **options):
    module = _module() if module is None else module
    rows = _rows() if rows is None else rows
    history = train_module(module, loss, rows, X_val, config=_config(**options),
                           generator=_generator(), callbacks=callbacks)
    return module, history


# --------------------------------------------------------------------------- #
# Epochs, steps and the rows they see
# --------------------------------------------------------------------------- #
def test_loss_curve_decreases_and_has_one_entry_per_epoch():
    recorder = Recorder()
    module, history = _train(max_epochs=30, callbacks=[recorder])
    assert isinstance(history, TrainingHistory)
    assert history.n_epochs == len(history.loss_curve) == 30
    assert history.n_steps == 30 * 4 and history.n_samples_seen == 30 * 64
    assert history.loss_curve[-1] < 0.1 * history.loss_curve[0]
    # without validation data and early stopping the last epoch's weights are kept
    assert history.best_epoch == 30 and history.validation_loss_curve == []
    assert history.n_lr_reductions == 0
    # callbacks: begin and end once, one call before every step, a check per epoch
    assert recorder.began == recorder.ended == 1
    assert len(recorder.steps) == history.n_steps
    assert [check[:3] for check in recorder.checks] == [
        (epoch, 4 * epoch, epoch) for epoch in range(1, 31)]
    assert all(check[3] is None for check in recorder.checks)
    assert not module.training  # the module is returned in evaluation mode


@settings(max_examples=30, deadline=None)
@given(
    n_rows=st.integers(1, 40),
    batch_size=st.integers(1, 16),
    max_epochs=st.integers(1, 3),
    max_steps=st.none() | st.integers(1, 20),
)
def test_every_row_is_seen_once_an_epoch_and_the_step_budget_is_kept(
    n_rows, batch_size, max_epochs, max_steps
):
    seen = []

    def recording_loss(module, batch, generator):
        seen.append(batch[:, 0].long().tolist())
        return _loss(module, batch, generator)

    _, history = _train(_rows(n_rows), loss=recording_loss, max_epochs=max_epochs,
                        batch_size=batch_size, max_steps=max_steps)
    steps_per_epoch = math.ceil(n_rows / batch_size)
    budget = max_epochs * steps_per_epoch
    n_steps = budget if max_steps is None else min(budget, max_steps)
    assert history.n_steps == len(seen) == n_steps
    # a last, partial epoch counts
    assert history.n_epochs == len(history.loss_curve) == math.ceil(n_steps / steps_per_epoch)
    assert history.n_samples_seen == sum(len(batch) for batch in seen)
    for epoch in range(history.n_epochs):
        batches = seen[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]
        rows = [row for batch in batches for row in batch]
        assert len(rows) == len(set(rows))  # no row twice in an epoch
        assert all(len(batch) == batch_size for batch in batches[:-1])
        if len(batches) == steps_per_epoch:  # a complete epoch sees every row
            assert sorted(rows) == list(range(n_rows))


def test_max_steps_caps_the_steps_within_an_epoch():
    recorder = Recorder()
    _, history = _train(max_epochs=10, max_steps=7, callbacks=[recorder])
    # 64 rows in batches of 16: 4 steps an epoch, so the 7th step is in the 2nd epoch
    assert history.n_steps == len(recorder.steps) == 7
    assert history.n_epochs == len(history.loss_curve) == 2
    assert history.n_samples_seen == 7 * 16
    assert recorder.checks[-1][:3] == (2, 7, 2)


def test_shuffling_depends_on_the_generator_only():
    first = _train()[1]
    again = _train()[1]
    assert first.loss_curve == again.loss_curve
    other = train_module(_module(), _loss, _rows(), config=_config(), generator=_generator(1))
    assert other.loss_curve != first.loss_curve


def test_noise_is_added_to_copies_of_the_training_rows():
    rows = torch.zeros(400, 5)
    batches = []

    def recording_loss(module, batch, generator):
        batches.append(batch.detach().clone())
        return _loss(module, batch, generator)

    _train(rows, loss=recording_loss, max_epochs=2, batch_size=100, noise_std=0.5)
    assert torch.equal(rows, torch.zeros(400, 5))  # the training data are untouched
    noise = torch.cat(batches)
    assert noise.std().item() == pytest.approx(0.5, rel=0.05)
    assert abs(noise.mean().item()) < 0.02


# --------------------------------------------------------------------------- #
# Validation checks and early stopping
# --------------------------------------------------------------------------- #
def test_the_loss_under_no_grad_is_the_validation_criterion():
    rows, X_val = _rows(64), _rows(10, seed=1)
    calls = []  # (rows, gradients on, module in training mode, random draw)
    draws = []

    def loss(module, batch, generator):
        draw = torch.rand((), generator=generator)
        calls.append((batch.shape[0], torch.is_grad_enabled(), module.training))
        if not torch.is_grad_enabled():
            draws.append(float(draw))
        return _loss(module, batch, generator)

    class Check(Callback):
        def on_check(self, state):
            with torch.no_grad():
                expected = float(_loss(state.module, X_val, None))
            assert state.validation_loss == expected

    _, history = _train(rows, X_val, loss=loss, max_epochs=6, callbacks=[Check()])
    validation = [call for call in calls if not call[1]]
    training = [call for call in calls if call[1]]
    assert len(validation) == len(history.validation_loss_curve) == 6
    # every check evaluates the whole validation split, without gradients, in eval mode
    assert all(n_rows == 10 and not in_training for n_rows, _, in_training, in validation)
    assert all(n_rows == 16 and in_training for n_rows, _, in_training in training)
    # ... with the same random draws at every check
    assert len(set(draws)) == 1
    assert history.validation_loss_curve[-1] < history.validation_loss_curve[0]


def test_a_criterion_replaces_the_loss_on_the_validation_split():
    rows, X_val = _rows(64), _rows(10, seed=1)

    def criterion(module, batch, generator):
        assert not torch.is_grad_enabled()
        return module(batch[:, 1:4]).abs().mean()

    recorder = Recorder()
    module = _module()
    history = train_module(module, _loss, rows, X_val, config=_config(max_epochs=3),
                           generator=_generator(), callbacks=[recorder], criterion=criterion)
    with torch.no_grad():
        last = float(criterion(module, X_val, None))
    assert history.validation_loss_curve[-1] == pytest.approx(last, rel=1e-6)
    assert [check[3] for check in recorder.checks] == history.validation_loss_curve


def _scripted(values):
    """A loss whose validation values are ``values``, one per check, in order."""
    remaining = list(values)

    def loss(module, batch, generator):
        value = _loss(module, batch, generator)
        if torch.is_grad_enabled():
            return value
        return torch.tensor(remaining.pop(0), dtype=torch.float64)

    return loss


def _stopping_reference(values, patience, tol):
    """Index of the best check and number of checks made, by the rule's definition."""
    best, best_index, waited = math.inf, None, 0
    for index, value in enumerate(values):
        if best_index is None or value < best - tol:
            best, best_index, waited = value, index, 0
        else:
            waited += 1
            if waited >= patience:
                return best_index, index + 1
    return best_index, len(values)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-10.0, 10.0), min_size=1, max_size=12),
    patience=st.integers(1, 4),
    tol=st.sampled_from([0.0, 0.5]),
)
def test_early_stopping_stops_after_patience_checks_and_keeps_the_best(values, patience, tol):
    recorder = Recorder()
    # 16 rows in one batch: one step and one check an epoch
    module, history = _train(_rows(16), _rows(4, seed=1), loss=_scripted(values),
                             max_epochs=len(values),
                             callbacks=[recorder, EarlyStopping(patience, tol)])
    best_index, n_checks = _stopping_reference(values, patience, tol)
    assert history.n_epochs == n_checks == len(recorder.checks)
    assert history.validation_loss_curve == values[:n_checks]
    assert history.best_epoch == best_index + 1
    for key, value in module.state_dict().items():
        assert torch.equal(value, recorder.weights_at_check[best_index][key]), key


def test_early_stopping_restores_the_best_weights_and_buffers():
    module = _module()
    module.register_buffer("last_epoch", torch.zeros(()))

    class MarkEpoch(Callback):
        def on_check(self, state):
            state.module.last_epoch.fill_(state.epoch)

    values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.05, 1.0]
    _, history = _train(_rows(16), _rows(4, seed=1), loss=_scripted(values), module=module,
                        max_epochs=50, callbacks=[MarkEpoch(), EarlyStopping(4)])
    # best at the third check, then four checks without improvement
    assert history.best_epoch == 3 and history.n_epochs == 7
    assert float(module.last_epoch) == 3.0


def test_early_stopping_without_validation_data_does_nothing():
    module, history = _train(max_epochs=6, callbacks=[EarlyStopping(1, tol=1e9)])
    assert history.n_epochs == 6 and history.best_epoch == 6


def test_checks_every_validation_interval_steps_within_long_epochs():
    # batches of one row: an epoch of 2.5 intervals
    n_rows = 2 * VALIDATION_INTERVAL + VALIDATION_INTERVAL // 2
    recorder = Recorder()
    _, history = _train(_rows(n_rows), _rows(8, seed=1), max_epochs=2, batch_size=1,
                        learning_rate=1e-3, callbacks=[recorder])
    total = 2 * n_rows
    expected = sorted({*range(VALIDATION_INTERVAL, total + 1, VALIDATION_INTERVAL),
                       n_rows, total})
    assert [steps for _, steps, _, _ in recorder.checks] == expected
    assert len(history.validation_loss_curve) == len(expected)
    assert [epoch for epoch, *_ in recorder.checks] == [1, 1, 1, 2, 2, 2]
    assert history.n_epochs == len(history.loss_curve) == 2
    # without validation data the callbacks are asked only at the end of epochs
    recorder = Recorder()
    _train(_rows(n_rows), max_epochs=2, batch_size=1, learning_rate=1e-3,
           callbacks=[recorder])
    assert [steps for _, steps, _, _ in recorder.checks] == [n_rows, total]


def test_early_stopping_can_stop_within_an_epoch():
    n_rows = 2 * VALIDATION_INTERVAL + VALIDATION_INTERVAL // 2
    # checks after 1, 2 and 2.5 intervals (the first epoch), then 3 intervals
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    _, history = _train(_rows(n_rows), _rows(8, seed=1), loss=_scripted(values),
                        max_epochs=5, batch_size=1, learning_rate=1e-3,
                        callbacks=[EarlyStopping(3)])
    stop = 3 * VALIDATION_INTERVAL
    assert history.validation_loss_curve == values[:4]
    assert history.n_steps == history.n_samples_seen == stop
    # the partial second epoch counts
    assert history.n_epochs == len(history.loss_curve) == 2
    assert history.best_epoch == 1


def test_a_callback_can_stop_training():
    class StopAtThirdEpoch(Callback):
        def on_check(self, state):
            return state.history.n_epochs == 3

    _, history = _train(max_epochs=10, callbacks=[StopAtThirdEpoch()])
    assert history.n_epochs == 3 and history.n_steps == 12 and history.best_epoch == 3


# --------------------------------------------------------------------------- #
# The divergence guard
# --------------------------------------------------------------------------- #
def _failing_at(calls, fail):
    """A loss that is NaN at the training calls for which ``fail(call)`` holds."""

    def loss(module, batch, generator):
        value = _loss(module, batch, generator)
        if not torch.is_grad_enabled():
            return value
        calls.append(len(calls))
        return value * torch.tensor(float("nan")) if fail(calls[-1]) else value

    return loss


def _attempt_starts(recorder, steps_per_epoch=4):
    """Steps of the recorder at which an epoch (or its retry) began."""
    return [i for i, (_, steps, _) in enumerate(recorder.steps) if steps % steps_per_epoch == 0]


def test_a_diverged_epoch_is_retried_from_its_start_with_a_10x_smaller_step(caplog):
    recorder = Recorder()
    calls = []
    with caplog.at_level(logging.WARNING, logger="sklearn_flowod"):
        module, history = _train(loss=_failing_at(calls, lambda call: call == 5),
                                 max_epochs=5, callbacks=[recorder])
    # the NaN came in the second step of the second epoch
    assert history.n_lr_reductions == 1
    assert "lowered the learning rate" in caplog.text
    starts = _attempt_starts(recorder)
    assert [recorder.steps[i][0] for i in starts[:3]] == [1, 2, 2]
    for key, value in recorder.weights_at_step[starts[1]].items():
        assert torch.equal(recorder.weights_at_step[starts[2]][key], value), key
    assert [recorder.steps[i][2] for i in starts] == pytest.approx(
        [LEARNING_RATE] * 2 + [0.1 * LEARNING_RATE] * (len(starts) - 2))
    assert all(np.isfinite(history.loss_curve)) and len(history.loss_curve) == history.n_epochs
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert history.n_steps <= 5 * 4


def test_non_finite_weights_count_as_a_divergence():
    first = [True]

    def loss(module, batch, generator):
        value = _loss(module, batch, generator)
        if first[0] and torch.is_grad_enabled():
            first[0] = False
            # a finite value with a NaN gradient: the step leaves NaN weights
            return value + 0.0 * torch.sqrt(module.weight.abs()).sum()
        return value

    # one step an epoch: the first epoch's loss is finite, its weights are not
    module, history = _train(loss=loss, max_epochs=3, batch_size=64)
    assert history.n_lr_reductions == 1 and history.n_epochs == 2
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert all(np.isfinite(history.loss_curve))


def test_persistent_divergence_raises_after_the_last_retry(caplog):
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="sklearn_flowod"), pytest.raises(
        TrainingDivergedError, match="learning_rate"
    ) as error:
        _train(loss=_failing_at([], lambda call: True), max_epochs=50, callbacks=[recorder])
    assert isinstance(error.value, FloatingPointError)
    warnings = [r for r in caplog.records if r.name == "sklearn_flowod"]
    assert len(warnings) == MAX_DIVERGENCE_RETRIES
    # every retry with a step 10 times smaller than the one before
    learning_rates = [recorder.steps[i][2] for i in _attempt_starts(recorder)]
    assert learning_rates == pytest.approx(
        [LEARNING_RATE * 0.1**k for k in range(MAX_DIVERGENCE_RETRIES + 1)])


# --------------------------------------------------------------------------- #
# The learning-rate schedule
# --------------------------------------------------------------------------- #
def test_cosine_schedule_anneals_to_zero_at_the_step_budget():
    recorder = Recorder()
    _, history = _train(max_epochs=100, max_steps=40, callbacks=[CosineSchedule(), recorder])
    rates = [rate for _, _, rate in recorder.steps]
    assert history.n_steps == len(rates) == 40
    expected = [LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * k / 40)) for k in range(40)]
    assert rates == pytest.approx(expected)
    assert rates[0] == pytest.approx(LEARNING_RATE)
    assert all(later <= earlier for earlier, later in zip(rates[:-1], rates[1:], strict=True))
    assert rates[-1] < 0.01 * LEARNING_RATE
    assert rates[len(rates) // 2] == pytest.approx(0.5 * LEARNING_RATE)


def test_cosine_schedule_follows_the_lowered_step_after_a_divergence():
    recorder = Recorder()
    _, history = _train(loss=_failing_at([], lambda call: call == 1), max_epochs=5,
                        callbacks=[CosineSchedule(), recorder])
    assert history.n_lr_reductions == 1
    total = 5 * 4
    for _, steps, rate in recorder.steps[4:]:  # the steps after the retry began
        assert rate == pytest.approx(
            0.1 * LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * steps / total)))


def test_constant_learning_rate_without_a_schedule():
    recorder = Recorder()
    _train(max_epochs=3, callbacks=[recorder])
    assert {rate for _, _, rate in recorder.steps} == {LEARNING_RATE}


def _recording_detector(base):
    """A detector that records the learning rate of every main-loop step."""

    class Recording(base):
        def _callbacks(self):
            self.recorder_ = Recorder()
            return [*super()._callbacks(), self.recorder_]

    Recording.__name__ = base.__name__
    return Recording


def test_the_detectors_lr_schedule_parameter_chooses_the_schedule():
    X = np.random.RandomState(0).normal(size=(200, 3))
    params = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 6, "batch_size": 50,
              "learning_rate": 1e-3, "validation_fraction": None, "device": "cpu",
              "random_state": 0}
    detector = _recording_detector(FlowDetector)
    constant = detector(**params).fit(X)
    assert {rate for _, _, rate in constant.recorder_.steps} == {1e-3}
    cosine = detector(lr_schedule="cosine", **params).fit(X)
    rates = [rate for _, _, rate in cosine.recorder_.steps]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] < 0.01 * rates[0]
    assert len(rates) == 6 * 4


# --------------------------------------------------------------------------- #
# The progress display
# --------------------------------------------------------------------------- #
PACKAGE_LOGGER = logging.getLogger("sklearn_flowod")
SMALL_FLOW = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 3, "device": "cpu",
              "random_state": 0}


@pytest.fixture
def without_tqdm(monkeypatch):
    """As if tqdm were not installed."""
    for name in [name for name in sys.modules if name == "tqdm" or name.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


@pytest.fixture
def recorded_bars(monkeypatch):
    """The tqdm bars the fits make."""
    tqdm_auto = pytest.importorskip("tqdm.auto")
    bars = []

    class RecordedBar(tqdm_auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(tqdm_auto, "tqdm", RecordedBar)
    return bars


def _package_records(caplog):
    return [record for record in caplog.records if record.name.startswith("sklearn_flowod")]


def _summary(line):
    """(label, epochs, kept epoch, reason) of a verbose fit's last line."""
    label, rest = line.split(": ", 1)
    epochs = int(rest.split(" epoch")[0])
    kept = int(rest.split("kept epoch ")[1].split(";")[0])
    return label, epochs, kept, rest.split("stopped by ")[1]


def test_verbose_without_tqdm_prints_one_line_per_epoch_and_a_summary(without_tqdm, capsys,
                                                                      caplog):
    caplog.set_level(logging.INFO)
    X = np.random.RandomState(0).normal(size=(200, 3))
    detector = FlowDetector(verbose=1, n_iter_no_change=None, **SMALL_FLOW).fit(X)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [
        "FlowDetector, epoch 1", "FlowDetector, epoch 2", "FlowDetector, epoch 3"]
    assert all("validation loss" in line for line in lines[:3])
    assert len(lines) == 4 and _summary(lines[3]) == (
        "FlowDetector", 3, detector.best_epoch_, "the cap of 3 epochs.")
    assert captured.err == ""
    assert _package_records(caplog) == []  # stdout, as scikit-learn's verbose estimators


def test_the_bar_has_a_total_only_when_nothing_stops_training_early(recorded_bars, capsys):
    X = np.random.RandomState(0).normal(size=(200, 3))
    FlowDetector(verbose=1, n_iter_no_change=None, **SMALL_FLOW).fit(X)
    stopping = FlowDetector(verbose=1, n_iter_no_change=2, tol=10.0,
                            **{**SMALL_FLOW, "max_epochs": 50}).fit(X)
    fixed, early = recorded_bars
    assert fixed.total == fixed.n == 3
    # an early-stopping fit has no known length: no total, no remaining time
    assert early.total is None and early.n == stopping.n_epochs_ == 3
    assert fixed.leave and early.leave  # the bars stay on screen
    captured = capsys.readouterr()
    assert "FlowDetector" in captured.err
    summaries = [_summary(line) for line in captured.out.splitlines()]
    assert summaries == [
        ("FlowDetector", 3, 3, "the cap of 3 epochs."),
        ("FlowDetector", 3, 1, "the held-out loss (no improvement of at least 10 in 2 checks).")]


def test_the_summary_names_the_step_cap_and_a_divergence(without_tqdm, capsys):
    _train(_rows(64), None, max_epochs=10, max_steps=6, batch_size=16,
           callbacks=[ProgressBar()])
    assert _summary(capsys.readouterr().out.splitlines()[-1]) == (
        "training", 2, 2, "the cap of 6 optimiser steps.")
    with pytest.raises(TrainingDivergedError):
        _train(loss=_failing_at([], lambda call: True), max_epochs=5,
               callbacks=[ProgressBar("diverging")])
    assert _summary(capsys.readouterr().out.splitlines()[-1]) == (
        "diverging", 0, 0, "a divergence (the loss stayed non-finite).")


def test_checks_within_an_epoch_are_not_reported_as_epochs(without_tqdm, capsys):
    n_rows = 2 * VALIDATION_INTERVAL + VALIDATION_INTERVAL // 2
    _train(_rows(n_rows), _rows(8, seed=1), max_epochs=2, batch_size=1, learning_rate=1e-3,
           callbacks=[ProgressBar()])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "training, epoch 1", "training, epoch 2"]


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_verbose_0_reports_nothing(tqdm_installed, capsys, caplog, monkeypatch):
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    caplog.set_level(logging.INFO)
    X = np.random.RandomState(0).normal(size=(200, 3))
    FlowDetector(verbose=0, **SMALL_FLOW).fit(X)
    assert _package_records(caplog) == []
    assert capsys.readouterr() == ("", "")


def test_a_progress_bar_is_named_by_its_description_or_the_surrounding_fit(
    without_tqdm, capsys
):
    _train(_rows(40), None, max_epochs=1, callbacks=[ProgressBar("encoder")])
    with progress_description("outer model"):
        _train(_rows(40), None, max_epochs=1, callbacks=[ProgressBar()])
        _train(_rows(40), None, max_epochs=1, callbacks=[ProgressBar("own name")])
    _train(_rows(40), None, max_epochs=1, callbacks=[ProgressBar()])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[::2]] == [
        "encoder, epoch 1", "outer model, epoch 1", "own name, epoch 1", "training, epoch 1"]


ALL_DETECTORS = [
    FlowDetector,
    ContrastiveFlowDetector,
    LikelihoodRatioDetector,
    InvertibleOneClassDetector,
    DeepSVDDDetector,
]


@pytest.mark.parametrize("tqdm_installed", [True, False])
@pytest.mark.parametrize("verbose", [0, 1])
@pytest.mark.parametrize("cls", ALL_DETECTORS, ids=lambda cls: cls.__name__)
def test_fits_leave_the_package_logger_unconfigured(cls, verbose, tqdm_installed,
                                                    monkeypatch, caplog, capsys):
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    caplog.set_level(logging.INFO)
    X = np.random.RandomState(0).normal(size=(100, 3))
    cls(max_epochs=2, device="cpu", random_state=0, verbose=verbose).fit(X)
    assert _package_records(caplog) == []
    # verbose=1 ends every trained model with its summary line
    summaries = [line for line in capsys.readouterr().out.splitlines() if "stopped by" in line]
    # the likelihood ratio's two flows and the contrastive flow's warm-up are named
    labels = {LikelihoodRatioDetector: ["general flow", "in-distribution flow"],
              ContrastiveFlowDetector: ["ContrastiveFlowDetector, maximum-likelihood warm-up",
                                        "ContrastiveFlowDetector"]}.get(cls, [cls.__name__])
    assert [line.split(": ")[0] for line in summaries] == (labels if verbose else [])
    # no handler, no level, no filter: what is shown is the application's choice
    assert PACKAGE_LOGGER.handlers == []
    assert PACKAGE_LOGGER.level == logging.NOTSET
    assert PACKAGE_LOGGER.filters == [] and PACKAGE_LOGGER.propagate


_APPLICATION = """
import logging, sys
import numpy as np
if sys.argv[2] == "no-tqdm":
    sys.modules["tqdm"] = sys.modules["tqdm.auto"] = None
logging.basicConfig(level=logging.INFO)
from sklearn_flowod import LikelihoodRatioDetector
X = np.random.RandomState(0).normal(size=(100, 3))
LikelihoodRatioDetector(n_blocks=2, hidden_size=8, max_epochs=2, device="cpu",
                        random_state=0, verbose=int(sys.argv[1])).fit(X)
logger = logging.getLogger("sklearn_flowod")
print(len(logger.handlers), logger.level)
"""


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_verbose_0_is_silent_in_an_application_that_logs_at_info(tqdm_installed):
    # the application configures logging itself, as a script does: basicConfig at
    # INFO on the root logger (under pytest the root logger is pytest's)
    tqdm_arg = "tqdm" if tqdm_installed else "no-tqdm"
    done = subprocess.run([sys.executable, "-c", _APPLICATION, "0", tqdm_arg],
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stderr == ""
    assert done.stdout.split() == ["0", str(logging.NOTSET)]


def test_verbose_1_without_tqdm_names_the_likelihood_ratios_two_flows():
    done = subprocess.run([sys.executable, "-c", _APPLICATION, "1", "no-tqdm"],
                          capture_output=True, text=True, timeout=300, check=True)
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "general flow, epoch 1", "general flow, epoch 2", "general flow",
        "in-distribution flow, epoch 1", "in-distribution flow, epoch 2",
        "in-distribution flow"]
    assert lines[-1].split() == ["0", str(logging.NOTSET)]
    assert done.stderr == ""  # nothing went through the application's log handler


# --------------------------------------------------------------------------- #
# Compiling
# --------------------------------------------------------------------------- #
class CompileSpy:
    """Stands in for ``torch.compile``: records the module and calls it uncompiled."""

    def __init__(self):
        self.modules = []

    def __call__(self, module, **kwargs):
        self.modules.append(module)
        spy = self

        class Compiled:
            def __call__(self, *args, **kw):
                spy.calls = getattr(spy, "calls", 0) + 1
                return module(*args, **kw)

        return Compiled()


def test_compile_evaluates_the_training_loss_through_torch_compile(monkeypatch):
    eager_module, eager = _train(_rows(60), _rows(10, seed=1), max_epochs=3)
    spy = CompileSpy()
    monkeypatch.setattr(torch, "compile", spy)
    seen = []

    def loss(module, batch, generator):
        seen.append((torch.is_grad_enabled(), module))
        return _loss(module, batch, generator)

    module, compiled = _train(_rows(60), _rows(10, seed=1), loss=loss, max_epochs=3,
                              compile=True)
    assert spy.modules == [module]
    # training steps see the compiled module, validation checks the module itself
    assert all(type(m).__name__ == "Compiled" for grad, m in seen if grad)
    assert all(m is module for grad, m in seen if not grad)
    # every row is still seen once an epoch (the last batch of 60 rows has 12)
    assert compiled.n_samples_seen == 3 * 60 and spy.calls == compiled.n_steps == 3 * 4
    assert compiled.loss_curve == eager.loss_curve
    assert compiled.validation_loss_curve == eager.validation_loss_curve
    assert torch.equal(module.weight, eager_module.weight)


def test_a_failing_compiler_is_not_hidden(monkeypatch):
    def broken(module, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        _train(compile=True)


@pytest.mark.parametrize(
    "detector_class",
    [FlowDetector, ContrastiveFlowDetector, InvertibleOneClassDetector, LikelihoodRatioDetector],
)
def test_detectors_pass_compile_to_training(detector_class, monkeypatch):
    X = np.random.RandomState(0).normal(size=(200, 3))
    params = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 3, "batch_size": 50,
              "device": "cpu", "random_state": 0}
    eager = detector_class(**params).fit(X)
    spy = CompileSpy()
    monkeypatch.setattr(torch, "compile", spy)
    compiled = detector_class(compile=True, **params).fit(X)
    assert spy.modules and all(isinstance(m, nn.Module) for m in spy.modules)
    assert getattr(spy, "calls", 0) > 0
    np.testing.assert_array_equal(compiled.loss_curve_, eager.loss_curve_)
    np.testing.assert_array_equal(compiled.score_samples(X), eager.score_samples(X))


@pytest.mark.skipif(no_compiler(), reason="torch.compile needs a C++ compiler on a CPU")
def test_compiled_training_matches_eager_and_refits_reuse_the_compiled_graph():
    from torch._dynamo.utils import counters

    X = np.random.RandomState(0).normal(size=(64, 3))
    params = {"n_blocks": 1, "hidden_size": 4, "max_epochs": 1, "batch_size": 32,
              "validation_fraction": None, "device": "cpu", "random_state": 0}
    eager = ContrastiveFlowDetector(clamp=-3.0, **params).fit(X)
    compiled = ContrastiveFlowDetector(clamp=-3.0, compile=True, **params).fit(X)
    np.testing.assert_allclose(compiled.loss_curve_, eager.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(compiled.score_samples(X), eager.score_samples(X),
                               rtol=1e-4, atol=1e-4)
    graphs = counters["stats"]["unique_graphs"]
    for clamp in [-4.0, -5.0]:
        ContrastiveFlowDetector(clamp=clamp, compile=True, **{**params, "random_state": 1}).fit(X)
    assert counters["stats"]["unique_graphs"] == graphs


# --------------------------------------------------------------------------- #
# The optimiser
# --------------------------------------------------------------------------- #
def test_adam_is_fused_on_cpus():
    from sklearn_flowod.training import _adam

    optimizer = _adam(list(nn.Linear(3, 2).parameters()), 1e-3, 0.5)
    assert optimizer.defaults["fused"] is True
    assert optimizer.defaults["lr"] == 1e-3 and optimizer.defaults["weight_decay"] == 0.5
    # elsewhere (here: tensors without data) the plain implementation
    assert not _adam(list(nn.Linear(3, 2, device="meta").parameters()), 1e-3, 0.0
                     ).defaults["fused"]


def test_gradient_clipping_bounds_every_step():
    norms = []

    class GradientNorm(Callback):
        def on_step_begin(self, state):
            gradients = [p.grad for p in state.module.parameters() if p.grad is not None]
            if gradients:
                norms.append(float(torch.linalg.vector_norm(torch.cat(
                    [g.reshape(-1) for g in gradients]))))

    def steep(module, batch, generator):
        return 1e3 * _loss(module, batch, generator)

    _train(loss=steep, max_epochs=2, max_grad_norm=0.5, callbacks=[GradientNorm()])
    assert norms and max(norms) <= 0.5 * (1 + 1e-5)


# --------------------------------------------------------------------------- #
# The callbacks parameter
# --------------------------------------------------------------------------- #
class EpochRecorder(Callback):
    """Records how often training starts, and the epoch of every end-of-epoch check."""

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.starts, self.epochs = 0, []

    @property
    def stop_reason(self):
        return f"the recorder's limit of {self.stop_after} epochs"

    def on_train_begin(self, state):
        self.starts += 1

    def on_check(self, state):
        if state.epoch_ended:
            self.epochs.append(state.history.n_epochs)
        return self.stop_after is not None and len(self.epochs) >= self.stop_after


@pytest.mark.parametrize("cls", ALL_DETECTORS, ids=lambda cls: cls.__name__)
def test_the_callbacks_parameter_sees_the_detectors_main_training_loop(cls):
    recorder = EpochRecorder()
    extra = {"pretrain_epochs": 2} if cls is DeepSVDDDetector else {}
    detector = cls(max_epochs=3, device="cpu", random_state=0, callbacks=[recorder], **extra)
    detector.fit(np.random.RandomState(0).normal(size=(100, 3)))
    # one loop: not the contrastive flow's warm-up, the likelihood ratio's general
    # flow or Deep SVDD's pretraining
    assert recorder.starts == 1
    assert recorder.epochs == list(range(1, detector.n_epochs_ + 1))
    copy = clone(detector)
    assert copy.callbacks[0] is not recorder and isinstance(copy.callbacks[0], EpochRecorder)


def test_a_callback_stops_training_and_the_summary_says_why(without_tqdm, capsys):
    X = np.random.RandomState(0).normal(size=(200, 3))
    detector = FlowDetector(verbose=1, callbacks=[EpochRecorder(stop_after=2)],
                            **{**SMALL_FLOW, "max_epochs": 20}).fit(X)
    assert detector.n_epochs_ == 2
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        "stopped by the recorder's limit of 2 epochs.")
