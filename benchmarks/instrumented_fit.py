"""Fit a package detector while measuring its main training loop from outside.

The detectors train through ``sklearn_flowod.training.train_module``, called
from ``BaseDeepDetector._train``. :func:`instrumented_fit` replaces that call
for the duration of one ``fit`` with a wrapper that

* counts the matmul FLOPs of one training step (forward and backward of the
  detector's own loss on a real batch), per training row;
* times the main loop (pre-training, which runs in ``_before_training``, such
  as the contrastive flow's warm-up or Deep SVDD's autoencoder, the
  likelihood ratio's general flow, the fit's set-up and threshold scoring
  are outside it);
* optionally evaluates a held-out AUROC after every epoch (through a
  callback of the loop), the time spent evaluating being subtracted from the
  loop's clock.

The time spent counting FLOPs and evaluating is subtracted from the fit's
clock too (``FitRecord.fit_s``).

No package code changes; the measurement sees exactly what a user's fit runs.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import sklearn_flowod.base as package_base
from sklearn_flowod.callbacks import Callback

from .flops import count_flops


@dataclass
class FitRecord:
    """What one instrumented fit measured."""

    fit_s: float = 0.0  # wall-clock time of the fit, without the measurement's own
    instrumentation_s: float = 0.0  # counting FLOPs and checking the AUROC
    train_s: float = 0.0
    n_samples_seen: int = 0  # rows that went into its optimisation steps
    n_epochs: int = 0
    flops_per_sample: float = 0.0
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # epoch, s, auroc

    @property
    def samples_per_s(self) -> float:
        """Training rows through the main loop's optimisation steps per second."""
        return self.n_samples_seen / self.train_s

    def time_to_auroc(self, target: float) -> float:
        """Fit time until the held-out AUROC first reached ``target`` (inf if never).

        The fit's time outside the main loop (set-up, pre-training and
        threshold scoring) is counted in full.
        """
        return self.fit_s - self.train_s + first_time_reaching(self.curve, target)


def first_time_reaching(curve, target: float) -> float:
    """Seconds of the first ``(epoch, seconds, auroc)`` entry with ``auroc >= target``.

    ``inf`` when no epoch reached it.
    """
    return next((seconds for _, seconds, auroc in curve if auroc >= target), float("inf"))


@contextmanager
def _wrapped_training(record: FitRecord, detector, evaluation):
    original = package_base.train_module
    original_fit = package_base.BaseDeepDetector._fit
    fitting = []  # the detectors whose fit is running, innermost last
    prepared = []  # whether the measured detector's _before_training has returned
    original_before = detector._before_training

    def before_training(*args, **kwargs):
        result = original_before(*args, **kwargs)
        prepared.append(True)
        return result

    def fit_wrapper(self, X, **fit_params):
        fitting.append(self)
        try:
            return original_fit(self, X, **fit_params)
        finally:
            fitting.pop()

    def wrapper(module, loss_fn, X_train, X_val=None, *, config, generator, callbacks=(),
                **options):
        if fitting[-1] is not detector or not prepared:
            # e.g. the likelihood ratio's general flow, or a pre-training
            return original(module, loss_fn, X_train, X_val, config=config,
                            generator=generator, callbacks=callbacks, **options)
        batch = X_train[: config.batch_size]
        flop_generator = torch.Generator(device=X_train.device).manual_seed(0)
        module.train()

        def step():
            loss_fn(module, batch, flop_generator).backward()

        counting = time.perf_counter()
        record.flops_per_sample = count_flops(step) / batch.shape[0]
        module.zero_grad(set_to_none=True)
        record.instrumentation_s += time.perf_counter() - counting
        spent = [0.0]
        start = time.perf_counter()
        if evaluation is not None:
            # first: its end-of-training evaluation sees the last weights, before
            # early stopping restores the best ones
            callbacks = [_Evaluator(detector, evaluation, record, start, spent), *callbacks]
        history = original(module, loss_fn, X_train, X_val, config=config,
                           generator=generator, callbacks=callbacks, **options)
        record.train_s = time.perf_counter() - start - spent[0]
        record.instrumentation_s += spent[0]
        record.n_epochs = history.n_epochs
        record.n_samples_seen = history.n_samples_seen
        return history

    package_base.train_module = wrapper
    package_base.BaseDeepDetector._fit = fit_wrapper
    detector._before_training = before_training
    try:
        yield
    finally:
        package_base.train_module = original
        package_base.BaseDeepDetector._fit = original_fit
        del detector._before_training


class _Evaluator(Callback):
    """The held-out AUROC after every completed epoch of the main loop."""

    def __init__(self, detector, evaluation, record: FitRecord, start: float, spent: list):
        self.detector, self.record, self.start, self.spent = detector, record, start, spent
        self.X_test, self.y_test = evaluation
        self.epochs = 0

    def on_check(self, state) -> None:
        if state.history.n_epochs == self.epochs:
            return  # a check within an epoch
        self._evaluate(state)

    def on_train_end(self, state) -> None:
        # training that stopped within an epoch (a check inside a long epoch)
        # ends with an epoch no check followed
        if state.history.n_epochs > self.epochs:
            self._evaluate(state)

    def _evaluate(self, state) -> None:
        self.epochs = state.history.n_epochs
        detector, module = self.detector, state.module
        begin = time.perf_counter()
        module.eval()
        # State fixed after training (the invertible net's latent scale) is taken
        # as 1 meanwhile: it rescales every latent code alike.
        provisional = (not hasattr(detector, "latent_scale_")
                       and "calibration_quantile" in detector.get_params())
        if provisional:
            detector.latent_scale_ = 1.0
        with torch.inference_mode():
            batch = detector._to_model_input(self.X_test, torch.float32)
            scores = detector._anomaly_score(module, batch).cpu().numpy().astype(np.float64)
        if provisional:
            del detector.latent_scale_
        module.train()
        auroc = roc_auc_score(self.y_test, np.nan_to_num(scores, nan=1e300, posinf=1e300))
        end = time.perf_counter()
        self.spent[0] += end - begin
        self.record.curve.append((self.epochs, end - self.start - self.spent[0], float(auroc)))


def instrumented_fit(detector, X, *, evaluation=None) -> FitRecord:
    """Fit ``detector`` on ``X`` and return what its main training loop did.

    Parameters
    ----------
    detector : BaseDeepDetector
        An unfitted package detector (fitted in place).
    X : ndarray of shape (n_samples, n_features)
        Training data.
    evaluation : tuple (X_test, y_test) or None, default=None
        Held-out rows and labels (1 = anomaly) for an AUROC after every
        epoch of the main loop (scored in float32 with the current weights).

    Returns
    -------
    record : FitRecord
    """
    record = FitRecord()
    with _wrapped_training(record, detector, evaluation):
        start = time.perf_counter()
        detector.fit(X)
        record.fit_s = time.perf_counter() - start - record.instrumentation_s
    return record
