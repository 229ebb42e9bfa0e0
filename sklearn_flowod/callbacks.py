"""Small pieces the training loop calls: early stopping, the learning-rate
schedule and the progress display.

A callback sees a :class:`~sklearn_flowod.training.TrainingState` (the
module, its optimiser, the history so far and the latest validation loss)
and may override any of the four methods of :class:`Callback`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time

import torch


def trainable_state(module) -> dict:
    """Copies of the tensors training changes: trainable parameters and buffers.

    Fixed parameters (a flow's mixing matrices, as large as the data is wide)
    are left out; restore with ``module.load_state_dict(state, strict=False)``.
    """
    return {name: tensor.detach().clone()
            for name, tensor in module.state_dict(keep_vars=True).items()
            if tensor.requires_grad or not isinstance(tensor, torch.nn.Parameter)}


class Callback:
    """Base class: every method does nothing."""

    def on_train_begin(self, state) -> None:
        """Called once, before the first step."""

    def on_step_begin(self, state) -> None:
        """Called before every optimiser step."""

    def on_check(self, state) -> bool | None:
        """Called after every epoch and validation check; True stops training (the
        callback's ``stop_reason`` attribute, if any, says why in the verbose summary)."""

    def on_train_end(self, state) -> None:
        """Called once, after the last step."""


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` checks.

    The weights (and buffers) of the best check are restored at the end.
    Without validation data (``state.validation_loss`` None) it does nothing.

    Parameters
    ----------
    patience : int
        Checks without an improvement of at least ``tol`` before stopping.
    tol : float, default=0.0
        Minimum decrease of the validation loss that counts as improvement.
    """

    def __init__(self, patience: int, tol: float = 0.0):
        self.patience = patience
        self.tol = tol

    @property
    def stop_reason(self) -> str:
        """Why it stopped training, for the summary line of ``verbose``."""
        return (f"the held-out loss (no improvement of at least {self.tol:g} in "
                f"{self.patience} checks)")

    def on_train_begin(self, state) -> None:
        self.best_loss, self.best_weights, self.waited = math.inf, None, 0

    def on_check(self, state) -> bool:
        loss = state.validation_loss
        if loss is None:
            return False
        if loss < self.best_loss - self.tol or self.best_weights is None:
            self.best_loss, self.waited = loss, 0
            self.best_weights = trainable_state(state.module)
            state.history.best_epoch = state.epoch
            return False
        self.waited += 1
        return self.waited >= self.patience

    def on_train_end(self, state) -> None:
        if self.best_weights is not None:
            state.module.load_state_dict(self.best_weights, strict=False)


class CosineSchedule(Callback):
    """Anneal the learning rate per step along a half cosine to zero at the step budget."""

    def on_step_begin(self, state) -> None:
        progress = min(state.history.n_steps, state.total_steps) / state.total_steps
        learning_rate = state.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate


#: The name a :class:`ProgressBar` without its own ``description`` shows.
_description = contextvars.ContextVar("sklearn_flowod_progress_description",
                                      default=None)


@contextlib.contextmanager
def progress_description(description: str):
    """Name the progress bars of the fits run inside the block.

    A detector that trains several models in one ``fit`` (the likelihood
    ratio's general and in-distribution flows) names each model's bar, also
    when the model is a detector of its own whose callbacks it does not build.
    A bar's own ``description`` takes precedence.
    """
    token = _description.set(description)
    try:
        yield
    finally:
        _description.reset(token)


class ProgressBar(Callback):
    """What ``verbose=1`` shows: one line per epoch, and one line on how training ended.

    With tqdm installed, a bar over the epochs (on standard error, as tqdm
    does) takes the place of the per-epoch lines; without it, each epoch
    prints its losses to standard output, as scikit-learn's estimators do
    with ``verbose``. Either way the fit ends with one line on standard
    output: the epochs run, the epoch whose weights were kept, why training
    stopped and how long it took. Nothing goes through :mod:`logging`.

    Parameters
    ----------
    description : str or None, default=None
        The label of the bar and of every line. ``None`` takes the name set
        by :func:`progress_description` around the fit, else ``fallback``.
    known_length : bool, default=False
        Whether training runs its whole epoch budget (nothing stops it
        early): only then does the bar show a total and a remaining time.
    fallback : str, default="training"
        The label when neither ``description`` nor a surrounding
        :func:`progress_description` names the fit (the detectors pass
        their class name).
    """

    def __init__(self, description: str | None = None, known_length: bool = False,
                 fallback: str = "training"):
        self.description = description
        self.known_length = known_length
        self.fallback = fallback

    def on_train_begin(self, state) -> None:
        self.label = self.description or _description.get() or self.fallback
        self.started = time.perf_counter()
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            total = state.epoch_budget if self.known_length else None
            self.bar = tqdm(total=total, desc=self.label, unit="epoch")

    def on_check(self, state) -> None:
        if not state.epoch_ended:
            return  # a check within an epoch
        history = state.history
        message = f"loss {history.loss_curve[-1]:.5g}"
        if state.validation_loss is not None:
            message += f", validation loss {state.validation_loss:.5g}"
        if self.bar is None:
            print(f"{self.label}, epoch {history.n_epochs}: {message}", flush=True)
        else:
            self.bar.update(1)
            self.bar.set_postfix_str(message)

    def on_train_end(self, state) -> None:
        if self.bar is not None:
            self.bar.close()
        history = state.history
        epochs = f"{history.n_epochs} epoch{'s' if history.n_epochs != 1 else ''}"
        print(f"{self.label}: {epochs} in {time.perf_counter() - self.started:.3g} s, kept "
              f"epoch {history.best_epoch}; stopped by {history.stop_reason}.", flush=True)
