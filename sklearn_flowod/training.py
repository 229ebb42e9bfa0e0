"""The one training loop: mini-batches, Adam, gradient clipping, the divergence
guard and the loss curves.

What varies between fits (early stopping, learning-rate schedules, progress
display, a detector's own per-epoch work) is a
:class:`~sklearn_flowod.callbacks.Callback` that the loop calls; the loss is
the detector's one ``_loss(module, batch, generator)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .callbacks import Callback, trainable_state
from .dequantization import add_uniform_noise

logger = logging.getLogger("sklearn_flowod")

#: How many times a diverged epoch is retried (each time with a 10x smaller
#: learning rate) before training gives up.
MAX_DIVERGENCE_RETRIES = 3

#: Optimiser steps between two validation checks within an epoch longer than this.
VALIDATION_INTERVAL = 100

LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss stays non-finite after every retry."""


@dataclass
class TrainingConfig:
    """What one call of :func:`train_module` trains with.

    Attributes
    ----------
    max_epochs, max_steps : int
        Caps on passes over the training rows and on optimiser steps.
    batch_size, learning_rate, weight_decay : see the detectors.
    max_grad_norm : float or None
        Clip the global gradient norm of every step to this value.
    noise_std : float
        Standard deviation of Gaussian noise added to every training batch
        (dequantisation: it gives discrete or constant columns a density).
    compile : bool
        Evaluate the loss through ``torch.compile(module)``.
    """

    max_epochs: int
    batch_size: int
    learning_rate: float
    max_steps: int | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    noise_std: float = 0.0
    compile: bool = False


@dataclass
class TrainingHistory:
    """What a call to :func:`train_module` did.

    Attributes
    ----------
    loss_curve : list of float
        Mean training loss of every completed epoch.
    validation_loss_curve : list of float
        Validation loss of every check (after every epoch, and every
        :data:`VALIDATION_INTERVAL` steps within longer epochs).
    best_epoch : int
        1-based epoch whose weights the module holds at the end.
    n_epochs, n_steps : int
        Completed epochs (a last, partial one counts) and optimiser steps.
    n_samples_seen : int
        Training rows that went into the optimisation steps.
    n_lr_reductions : int
        How often a diverged epoch was retried with a smaller step.
    stop_reason : str
        Why training ended: a callback's ``stop_reason`` (early stopping),
        the epoch or step cap, or a divergence.
    """

    loss_curve: list[float] = field(default_factory=list)
    validation_loss_curve: list[float] = field(default_factory=list)
    best_epoch: int = 0
    n_epochs: int = 0
    n_steps: int = 0
    n_samples_seen: int = 0
    n_lr_reductions: int = 0
    stop_reason: str = ""


@dataclass
class TrainingState:
    """What the callbacks see: the module, its optimiser and the history so far."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainingConfig
    history: TrainingHistory
    learning_rate: float  # the base step, lowered after a divergence
    total_steps: int  # the step budget (``max_steps`` or ``max_epochs`` full epochs)
    epoch_budget: int = 0  # the epochs that budget allows
    loss_fn: LossFn | None = None  # what each step minimises, ``loss_fn(module, batch, gen)``
    X_train: torch.Tensor | None = None  # the rows the steps draw their batches from
    epoch: int = 0  # the current, 1-based epoch
    validation_loss: float | None = None  # of the latest check

    @property
    def epoch_ended(self) -> bool:
        """Whether the current epoch is recorded (a check after it, not within it)."""
        return self.history.n_epochs == self.epoch


def train_module(module: nn.Module, loss_fn: LossFn, X_train: torch.Tensor,
                 X_val: torch.Tensor | None = None, *, config: TrainingConfig,
                 generator: torch.Generator, callbacks: Sequence[Callback] = (),
                 criterion: LossFn | None = None,
                 noise_widths: torch.Tensor | None = None) -> TrainingHistory:
    """Train ``module`` in place by minimising ``loss_fn`` over mini-batches.

    Parameters
    ----------
    module : torch.nn.Module
        The network, already on the training device.
    loss_fn : callable
        ``loss_fn(module, batch, generator)`` returns the scalar mean loss of a
        batch. ``generator`` lives on the training device and is the only
        source of randomness the loss may use. Under ``torch.no_grad`` (the
        validation checks) it evaluates the same loss.
    X_train : torch.Tensor of shape (n_samples, n_features)
        Training data on the training device.
    X_val : torch.Tensor or None, default=None
        Validation data: the criterion on it, with a generator seeded the same
        way at every check, is recorded after every epoch and every
        :data:`VALIDATION_INTERVAL` steps within longer epochs, for the
        callbacks (e.g. :class:`~sklearn_flowod.callbacks.EarlyStopping`).
    config : TrainingConfig
        Budget and optimiser settings.
    generator : torch.Generator
        Seeded generator on the training device (shuffling, noise, the loss).
    callbacks : sequence of Callback, default=()
        Called at the start and end of training, before every step and
        after every check; one that returns True from ``on_check`` stops
        training.
    criterion : callable or None, default=None
        The held-out criterion, called like ``loss_fn`` on ``X_val``;
        None uses ``loss_fn`` itself.
    noise_widths : torch.Tensor or None, default=None
        Per-entry widths of uniform noise, the shape of ``X_train``: every
        training batch gets ``U[-w/2, w/2]`` noise on top of
        ``config.noise_std`` (see :mod:`sklearn_flowod.dequantization`).

    Returns
    -------
    history : TrainingHistory

    Raises
    ------
    TrainingDivergedError
        If the loss is still non-finite after the learning rate was lowered
        :data:`MAX_DIVERGENCE_RETRIES` times.
    """
    n_samples, batch_size = X_train.shape[0], config.batch_size
    steps_per_epoch = max(1, math.ceil(n_samples / batch_size))
    max_steps = config.max_epochs * steps_per_epoch
    if config.max_steps is not None:
        max_steps = min(max_steps, config.max_steps)
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = _adam(parameters, config.learning_rate, config.weight_decay)
    model = torch.compile(module) if config.compile else module
    history = TrainingHistory()
    state = TrainingState(module, optimizer, config, history, config.learning_rate, max_steps,
                          epoch_budget=math.ceil(max_steps / steps_per_epoch),
                          loss_fn=loss_fn, X_train=X_train)
    check = _validation(loss_fn if criterion is None else criterion, X_val, generator)
    for callback in callbacks:
        callback.on_train_begin(state)
    try:
        _run_epochs(state, loss_fn, model, X_train, generator, check, callbacks, parameters,
                    noise_widths)
    except TrainingDivergedError:
        history.stop_reason = "a divergence (the loss stayed non-finite)"
        _end(state, callbacks)
        raise
    if not history.stop_reason:
        history.stop_reason = (f"the cap of {config.max_epochs} epochs"
                               if history.n_epochs >= config.max_epochs
                               else f"the cap of {max_steps} optimiser steps")
    _end(state, callbacks)
    module.eval()
    return history


def _end(state: TrainingState, callbacks: Sequence[Callback]) -> None:
    """Tell the callbacks that training ended (the history names the kept epoch)."""
    if not state.history.best_epoch:
        state.history.best_epoch = state.history.n_epochs
    for callback in callbacks:
        callback.on_train_end(state)


def _run_epochs(state: TrainingState, loss_fn: LossFn, model, X_train: torch.Tensor,
                generator: torch.Generator, check, callbacks: Sequence[Callback], parameters,
                noise_widths) -> None:
    """The epochs of :func:`train_module`, until a callback or the step budget ends them."""
    module, optimizer, config, history = state.module, state.optimizer, state.config, state.history
    n_samples, batch_size, max_steps = X_train.shape[0], config.batch_size, state.total_steps
    stop = False
    while not stop and history.n_steps < max_steps:
        snapshot = trainable_state(module)
        module.train()
        order = torch.randperm(n_samples, generator=generator, device=X_train.device)
        total, rows = torch.zeros((), device=X_train.device), 0
        state.epoch = history.n_epochs + 1
        for start in range(0, n_samples, batch_size):
            for callback in callbacks:
                callback.on_step_begin(state)
            rows_of_batch = order[start : start + batch_size]
            batch = X_train.index_select(0, rows_of_batch)
            # the gathered batch is a copy: add the noise in place
            if noise_widths is not None:
                add_uniform_noise(batch, noise_widths.index_select(0, rows_of_batch), generator)
            if config.noise_std > 0:
                batch += torch.empty_like(batch).normal_(0.0, config.noise_std, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch, generator)
            loss.backward()
            if config.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(parameters, config.max_grad_norm, foreach=True)
            optimizer.step()
            total += loss.detach() * batch.shape[0]
            rows += batch.shape[0]
            history.n_steps += 1
            last = start + batch_size >= n_samples or history.n_steps >= max_steps
            if not last:
                if check is None or history.n_steps % VALIDATION_INTERVAL:
                    continue
                stop = _check(state, module, check, callbacks)
                if not stop:
                    continue
            # the end of the epoch, or of training within it
            if _finished_epoch(state, snapshot, total, rows, parameters) and last:
                stop = _check(state, module, check, callbacks)
            break


def _finished_epoch(state: TrainingState, snapshot, total, rows, parameters) -> bool:
    """Record a finished epoch; False (after restoring ``snapshot``) if it diverged."""
    history = state.history
    epoch_loss = float(total) / rows
    finite = nn.utils.parameters_to_vector(parameters).isfinite().all()
    if not (math.isfinite(epoch_loss) and finite):
        _recover(state, snapshot)
        return False
    history.loss_curve.append(epoch_loss)
    history.n_epochs += 1
    history.n_samples_seen += rows
    return True


def _validation(loss_fn: LossFn, X_val, generator: torch.Generator):
    """The validation loss of a module, with the same random draws at every check."""
    if X_val is None:
        return None
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=X_val.device))
    val_generator = torch.Generator(device=X_val.device)

    def validation_loss(module: nn.Module) -> float:
        val_generator.manual_seed(seed)
        module.eval()
        with torch.no_grad():
            return float(loss_fn(module, X_val, val_generator))

    return validation_loss


def _check(state: TrainingState, module, check, callbacks) -> bool:
    """Compute the validation loss (if any) and ask the callbacks whether to stop."""
    if check is not None:
        state.validation_loss = check(module)
        state.history.validation_loss_curve.append(state.validation_loss)
        module.train()
    stopping = [callback for callback in callbacks if callback.on_check(state)]
    if stopping:
        state.history.stop_reason = getattr(stopping[0], "stop_reason",
                                            type(stopping[0]).__name__)
    return bool(stopping)


def _adam(parameters: list[nn.Parameter], learning_rate: float,
          weight_decay: float) -> torch.optim.Adam:
    """Adam over ``parameters``, fused into one kernel per step on CPUs and CUDA."""
    fused = parameters[0].device.type in ("cpu", "cuda")
    return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay, fused=fused)


def _recover(state: TrainingState, snapshot) -> None:
    """Restore the weights of the last good epoch, restart Adam with a 10x lower base step.

    Adam's moments are dropped rather than restored: they were built with the
    step that diverged, and keeping a copy of them would mean copying every
    moment tensor at the start of every epoch, in every fit, for the rare
    fit that diverges.
    """
    history = state.history
    if history.n_lr_reductions >= MAX_DIVERGENCE_RETRIES:
        raise TrainingDivergedError(f"The training loss became non-finite in epoch {state.epoch} "
                                    "and stayed so after lowering the learning rate "
                                    f"{MAX_DIVERGENCE_RETRIES} times. Lower `learning_rate`, keep "
                                    "`standardize=True`, or check the input for extreme values.")
    state.module.load_state_dict(snapshot, strict=False)
    state.optimizer.state.clear()
    state.learning_rate *= 0.1
    for group in state.optimizer.param_groups:
        group["lr"] = state.learning_rate
    history.n_lr_reductions += 1
    logger.warning("Non-finite training loss in epoch %d: restored the previous weights and "
                   "lowered the learning rate to %.3g.", state.epoch, state.learning_rate)
