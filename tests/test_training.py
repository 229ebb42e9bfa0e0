"""The shared training loop: curves, early stopping, divergence guard."""

import contextlib
import logging

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_flowod import (
    ContrastiveFlowDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.training import TrainingDivergedError, train_module

from .conftest import no_compiler


def _problem(seed=0):
    torch.manual_seed(seed)
    module = nn.Linear(3, 1)
    X = torch.randn(64, 3)
    target = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def loss(m, batch, generator):
        # batch rows are indices into X through their first column
        idx = batch[:, 0].long()
        return (m(X[idx]).squeeze(1) - target[idx]).square().mean()

    rows = torch.arange(64, dtype=torch.float32).unsqueeze(1)
    return module, loss, rows


def _generator(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_loss_curve_decreases_and_has_one_entry_per_epoch():
    module, loss, rows = _problem()
    history = train_module(
        module, loss, rows, max_epochs=30, batch_size=16, learning_rate=0.05,
        generator=_generator(),
    )
    assert history.n_epochs == len(history.loss_curve) == 30
    assert history.loss_curve[-1] < 0.1 * history.loss_curve[0]


def test_cosine_schedule_ends_with_a_small_step():
    module, loss, rows = _problem()
    train_module(
        module, loss, rows, max_epochs=5, batch_size=16, learning_rate=0.05,
        lr_schedule="cosine", generator=_generator(),
    )
    # nothing to inspect on the optimiser from outside: the schedule is a pure
    # function of the step; check its end points instead
    from sklearn_flowod.training import _schedule

    factor = _schedule("cosine", 100)
    assert factor(0) == pytest.approx(1.0)
    assert factor(50) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0, abs=1e-12)
    assert _schedule("constant", 100) is None


def test_early_stopping_restores_the_best_weights():
    module, loss, rows = _problem()
    calls = {"n": 0}

    def validation(m, x):
        # best at the third evaluation, worse afterwards
        calls["n"] += 1
        if calls["n"] == 3:
            validation.best = {k: v.clone() for k, v in m.state_dict().items()}
        return torch.tensor(abs(calls["n"] - 3.0))

    history = train_module(
        module, loss, rows, rows[:8], max_epochs=50, batch_size=16, learning_rate=0.05,
        n_iter_no_change=4, generator=_generator(), validation_loss_fn=validation,
    )
    assert history.best_epoch == 3
    assert history.n_epochs == 7
    for key, value in module.state_dict().items():
        assert torch.equal(value, validation.best[key])


def test_a_diverged_epoch_is_retried_with_a_smaller_step(caplog):
    module, loss, rows = _problem()
    state = {"epoch_batches": 0}

    def flaky(m, batch, generator):
        state["epoch_batches"] += 1
        value = loss(m, batch, generator)
        if state["epoch_batches"] == 2:  # one NaN in the first epoch only
            return value * torch.tensor(float("nan"))
        return value

    with caplog.at_level(logging.WARNING, logger="sklearn_flowod"):
        history = train_module(
            module, flaky, rows, max_epochs=5, batch_size=16, learning_rate=0.05,
            generator=_generator(),
        )
    assert history.n_lr_reductions == 1
    assert history.n_epochs == 5
    assert all(np.isfinite(history.loss_curve))
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert "lowered the learning rate" in caplog.text


def test_persistent_divergence_raises_a_clear_error():
    module, loss, rows = _problem()

    def always_nan(m, batch, generator):
        return loss(m, batch, generator) * torch.tensor(float("nan"))

    with pytest.raises(TrainingDivergedError, match="learning_rate"):
        train_module(
            module, always_nan, rows, max_epochs=5, batch_size=16, learning_rate=0.05,
            generator=_generator(),
        )


def test_epoch_callback_sees_every_completed_epoch_and_its_state_is_restored():
    module, loss, rows = _problem()
    module.register_buffer("last_epoch", torch.zeros(()))
    seen = []

    def callback(m, epoch):
        seen.append(epoch)
        m.last_epoch.fill_(epoch)

    history = train_module(
        module, loss, rows, rows[:16], max_epochs=6, batch_size=16, learning_rate=0.05,
        n_iter_no_change=1, tol=1e9, generator=_generator(), epoch_callback=callback,
    )
    assert seen == list(range(1, history.n_epochs + 1))
    # early stopping restores the best epoch's buffers along with its weights
    assert float(module.last_epoch) == history.best_epoch == 1


def test_compiling_trains_on_full_batches_only():
    module, loss, rows = _problem()
    seen = []

    def recording_loss(m, batch, generator):
        seen.append(batch.shape[0])
        return loss(m, batch, generator)

    expect_fallback = pytest.warns(RuntimeWarning, match="torch.compile failed")
    with expect_fallback if no_compiler() else contextlib.nullcontext():
        history = train_module(module, recording_loss, rows[:60], max_epochs=2, batch_size=16,
                               learning_rate=0.05, generator=_generator(), compile=True)
    assert set(seen) == {16} and len(seen) >= 2 * 3  # 60 rows: 3 full batches an epoch
    assert history.n_samples_seen == 2 * 48


def test_every_row_is_seen_once_an_epoch_without_compiling():
    module, loss, rows = _problem()
    history = train_module(module, loss, rows[:60], max_epochs=3, batch_size=16,
                           learning_rate=0.05, generator=_generator())
    assert history.n_samples_seen == 3 * 60


def test_a_failing_compiler_falls_back_to_the_uncompiled_step(monkeypatch):
    def broken(module, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return call

    module, loss, rows = _problem()
    eager = train_module(module, loss, rows, max_epochs=5, batch_size=16, learning_rate=0.05,
                         generator=_generator())
    monkeypatch.setattr(torch, "compile", broken)
    other, loss, rows = _problem()
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*without compiling"):
        fallback = train_module(other, loss, rows, max_epochs=5, batch_size=16,
                                learning_rate=0.05, generator=_generator(), compile=True)
    # 64 rows in batches of 16: the same batches, so the very same training
    assert fallback.loss_curve == eager.loss_curve
    assert torch.equal(other.weight, module.weight)


@pytest.mark.parametrize(
    "detector_class",
    [FlowDetector, ContrastiveFlowDetector, InvertibleOneClassDetector, LikelihoodRatioDetector],
)
def test_detectors_pass_compile_to_training(detector_class, monkeypatch):
    X = np.random.RandomState(0).normal(size=(200, 3))
    params = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 3, "batch_size": 50,
              "validation_fraction": None, "device": "cpu", "random_state": 0}
    eager = detector_class(**params).fit(X)

    def broken(module, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="without compiling"):
        fallback = detector_class(compile=True, **params).fit(X)
    # 200 rows in batches of 50: the compiled path sees the same batches
    np.testing.assert_array_equal(fallback.score_samples(X), eager.score_samples(X))


def test_adam_is_fused_where_torch_supports_it(monkeypatch):
    from sklearn_flowod.training import _adam

    parameters = list(nn.Linear(3, 2).parameters())
    assert _adam(parameters, 1e-3, 0.0).defaults["fused"] is True  # CPU, torch >= 2.4
    original = torch.optim.Adam

    def without_fused(params, fused=None, **options):
        if fused:
            raise RuntimeError("`fused=True` is not supported here")
        return original(params, **options)

    monkeypatch.setattr(torch.optim, "Adam", without_fused)
    assert not _adam(parameters, 1e-3, 0.0).defaults["fused"]


@pytest.mark.skipif(no_compiler(), reason="torch.compile needs a C++ compiler on a CPU")
def test_refitting_with_another_clamp_reuses_the_compiled_loss():
    from torch._dynamo.utils import counters

    X = np.random.RandomState(0).normal(size=(64, 3))
    params = {"n_blocks": 1, "hidden_size": 4, "max_epochs": 1, "batch_size": 32,
              "validation_fraction": None, "device": "cpu", "compile": True}
    ContrastiveFlowDetector(clamp=-3.0, **params).fit(X)
    graphs = counters["stats"]["unique_graphs"]
    for clamp in [-4.0, -5.0]:
        ContrastiveFlowDetector(clamp=clamp, random_state=1, **params).fit(X)
    assert counters["stats"]["unique_graphs"] == graphs


def test_validation_view_replaces_the_module_in_the_default_validation_loss():
    module, loss, rows = _problem()
    seen = []

    def view(m):
        seen.append(m)
        return lambda x: 2.0 * m(x)

    history = train_module(module, loss, rows, rows[:16], max_epochs=2, batch_size=16,
                           learning_rate=0.05, generator=_generator(), validation_view=view)
    assert seen == [module, module]
    with torch.no_grad():
        expected = float(loss(lambda x: 2.0 * module(x), rows[:16], _generator()))
    assert history.validation_loss_curve[-1] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("detector_class", [FlowDetector, ContrastiveFlowDetector])
def test_flows_validate_through_the_folded_evaluator_with_the_same_losses(
    detector_class, monkeypatch
):
    X = np.random.RandomState(0).normal(size=(300, 4))
    params = {"n_blocks": 3, "hidden_size": 16, "max_epochs": 4, "random_state": 0}
    folded = detector_class(**params).fit(X)
    options = detector_class._training_options
    monkeypatch.setattr(detector_class, "_training_options",
                        lambda self: {**options(self), "validation_view": None})
    plain = detector_class(**params).fit(X)
    # float32 losses of order 1 (the contrastive flow's is a difference of two)
    np.testing.assert_allclose(folded.validation_loss_curve_, plain.validation_loss_curve_,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(folded.loss_curve_, plain.loss_curve_)
