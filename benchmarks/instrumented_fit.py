"""Fit a package detector while measuring its main training loop.

A callback given through the detector's public ``callbacks`` parameter (which
the detectors call in their main training loop only, not in a warm-up, a
pretraining or the likelihood ratio's general flow) measures, for one
``fit``:

* the time of the main loop (the fit's set-up, any pre-training and the
  threshold scoring are outside it) and the rows through its steps;
* optionally, a held-out AUROC after every epoch, the time spent evaluating
  being subtracted from the loop's clock and from the fit's
  (``FitRecord.fit_s``).

The measurement sees what a user's fit runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from sklearn_flowod.callbacks import Callback


@dataclass
class FitRecord:
    """What one instrumented fit measured."""

    fit_s: float = 0.0  # wall-clock time of the fit, without the measurement's own
    instrumentation_s: float = 0.0  # checking the AUROC
    train_s: float = 0.0
    n_samples_seen: int = 0  # rows that went into its optimisation steps
    n_epochs: int = 0
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # epoch, s, auroc

    @property
    def samples_per_s(self) -> float:
        """Training rows through the main loop's optimisation steps per second."""
        return self.n_samples_seen / self.train_s


class _Measure(Callback):
    """Times the loop and checks the held-out AUROC after every
    completed epoch (the first callback of the loop, so that its end-of-training
    check sees the last weights, before early stopping restores the best ones)."""

    def __init__(self, detector, evaluation, record: FitRecord):
        self.detector, self.evaluation, self.record = detector, evaluation, record

    def on_train_begin(self, state) -> None:
        self.epochs, self.spent, self.start = 0, 0.0, time.perf_counter()

    def on_check(self, state) -> None:
        if self.evaluation is not None and state.history.n_epochs != self.epochs:
            self._evaluate(state)

    def on_train_end(self, state) -> None:
        # training that stopped within an epoch (a check inside a long epoch)
        # ends with an epoch no check followed
        if self.evaluation is not None and state.history.n_epochs > self.epochs:
            self._evaluate(state)
        self.record.train_s = time.perf_counter() - self.start - self.spent
        self.record.instrumentation_s += self.spent
        self.record.n_epochs = state.history.n_epochs
        self.record.n_samples_seen = state.history.n_samples_seen

    def _evaluate(self, state) -> None:
        self.epochs = state.history.n_epochs
        detector, module = self.detector, state.module
        X_test, y_test = self.evaluation
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
        self.spent += end - begin
        self.record.curve.append((self.epochs, end - self.start - self.spent, float(auroc)))


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
    callbacks = detector.callbacks
    detector.set_params(callbacks=[_Measure(detector, evaluation, record), *(callbacks or [])])
    try:
        start = time.perf_counter()
        detector.fit(X)
        record.fit_s = time.perf_counter() - start - record.instrumentation_s
    finally:
        detector.set_params(callbacks=callbacks)
    return record
