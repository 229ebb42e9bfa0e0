"""Fit a package detector while measuring its main training loop from outside.

The detectors train through ``sklearn_flowod.training.train_module``, called
from ``BaseDeepDetector._fit``. :func:`instrumented_fit` replaces that call
for the duration of one ``fit`` with a wrapper that

* counts the matmul FLOPs of one training step (forward and backward of the
  detector's own loss on a real batch), per training row;
* times the main loop (pre-training such as the contrastive flow's warm-up,
  the likelihood ratio's general flow, the fit's set-up and threshold
  scoring are outside it);
* optionally evaluates a held-out AUROC after every epoch, the time spent
  evaluating being subtracted from the loop's clock;
* counts the rows of a clamped loss term (the contrastive flow's auxiliary
  samples) that its training steps backpropagated, out of all it saw.

The time spent counting FLOPs and evaluating is subtracted from the fit's
clock too (``FitRecord.fit_s``).

No package code changes; the measurement sees exactly what a user's fit runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import sklearn_flowod.base as package_base
import sklearn_flowod.training as package_training

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
    clamped_rows: int = 0  # rows of a clamped term seen by the main loop's steps
    clamped_rows_backpropagated: int = 0  # of those, rows evaluated with gradients

    @property
    def backpropagated_fraction(self) -> float:
        """Share of a clamped term's rows that were backpropagated (NaN without one)."""
        return (self.clamped_rows_backpropagated / self.clamped_rows
                if self.clamped_rows else float("nan"))

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
    original_step = package_training.TrainingStep
    steps = []  # the training steps of the main loop

    def recording_step(*args, **kwargs):
        steps.append(original_step(*args, **kwargs))
        return steps[-1]

    def fit_wrapper(self, X, **fit_params):
        fitting.append(self)
        try:
            return original_fit(self, X, **fit_params)
        finally:
            fitting.pop()

    def wrapper(module, loss_fn, X_train, X_val=None, **options):
        if fitting[-1] is not detector:  # e.g. the likelihood ratio's general flow
            return original(module, loss_fn, X_train, X_val, **options)
        batch = X_train[: options["batch_size"]]
        generator = torch.Generator(device=X_train.device).manual_seed(0)
        module.train()

        def step():
            loss_fn(module, batch, generator).backward()

        counting = time.perf_counter()
        record.flops_per_sample = count_flops(step) / batch.shape[0]
        module.zero_grad(set_to_none=True)
        record.instrumentation_s += time.perf_counter() - counting
        spent = [0.0]
        start = time.perf_counter()
        if evaluation is not None:
            options["epoch_callback"] = _evaluator(detector, evaluation, record, start, spent)
        package_training.TrainingStep = recording_step
        try:
            history = original(module, loss_fn, X_train, X_val, **options)
        finally:
            package_training.TrainingStep = original_step
        record.train_s = time.perf_counter() - start - spent[0]
        record.clamped_rows = sum(made.clamped_rows for made in steps)
        record.clamped_rows_backpropagated = sum(made.clamped_rows_backpropagated
                                                 for made in steps)
        record.instrumentation_s += spent[0]
        record.n_epochs = history.n_epochs
        record.n_samples_seen = history.n_samples_seen
        return history

    package_base.train_module = wrapper
    package_base.BaseDeepDetector._fit = fit_wrapper
    try:
        yield
    finally:
        package_base.train_module = original
        package_base.BaseDeepDetector._fit = original_fit


def _evaluator(detector, evaluation, record: FitRecord, start: float, spent: list) -> Callable:
    X_test, y_test = evaluation

    def callback(module, epoch):
        begin = time.perf_counter()
        module.eval()
        # State fixed after training (the invertible net's latent scale) is taken
        # as 1 meanwhile: it rescales every latent code alike.
        provisional = (not hasattr(detector, "latent_scale_")
                       and "calibration_quantile" in detector.get_params())
        if provisional:
            detector.latent_scale_ = 1.0
        with torch.inference_mode():
            batch = detector._to_model_input(X_test, torch.float32)
            scores = detector._anomaly_score(module, batch).cpu().numpy().astype(np.float64)
        if provisional:
            del detector.latent_scale_
        module.train()
        auroc = roc_auc_score(y_test, np.nan_to_num(scores, nan=1e300, posinf=1e300))
        end = time.perf_counter()
        spent[0] += end - begin
        record.curve.append((epoch, end - start - spent[0], float(auroc)))

    return callback


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
