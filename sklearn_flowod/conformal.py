"""Conformal p-values and thresholds with a stated false-alarm rate.

The anomaly scores of held-out normal rows (the calibration rows) give
every new row the p-value::

    p(x) = (1 + #{calibration rows scored at least s(x)}) / (n + 1)

For a new normal row exchangeable with the calibration rows,
``P(p(x) <= a) <= a`` for every rate ``a``, and at least
``a - 1 / (n + 1)`` when scores have no ties (Vovk et al., 2005; the
split-conformal construction). Flagging the rows with ``p(x) <= a`` is
therefore a threshold with false-alarm rate at most ``a``. The guarantee is
marginal (on average over calibration sets) and breaks when the normal data
drift away from the calibration rows.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_is_fitted


def conformal_pvalues(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """p-values of anomaly ``scores`` against sorted anomaly scores ``calibration``."""
    n = calibration.shape[0]
    at_least = n - np.searchsorted(calibration, scores, side="left")
    return (1.0 + at_least) / (n + 1.0)


def conformal_threshold(calibration: np.ndarray, rate: float) -> float:
    """The anomaly score above which ``p(x) <= rate`` (``inf`` when no row can be flagged)."""
    n = calibration.shape[0]
    k = math.floor(rate * (n + 1) + 1e-9)
    return float(calibration[n - k]) if k >= 1 else math.inf


class ConformalMixin:
    """``calibrate``, ``pvalues`` and ``set_false_alarm_rate`` of the detectors."""

    def calibrate(self, X):
        """Score held-out normal rows to calibrate ``pvalues`` and ``set_false_alarm_rate``.

        ``fit`` calibrates on its validation split already (when
        ``validation_fraction`` is set). Call this with fresh normal rows,
        e.g. recent ones after the data drifted, to replace those
        calibration rows; no weight is trained.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Normal rows the detector was not trained on.

        Returns
        -------
        self : object
            The detector, with ``calibration_scores_`` replaced.
        """
        self.calibration_scores_ = np.sort(self.anomaly_score(X))
        return self

    def _calibration(self) -> np.ndarray:
        check_is_fitted(self)
        if getattr(self, "calibration_scores_", None) is None:
            raise NotFittedError(
                f"This {type(self).__name__} has no calibration rows: it was fitted with "
                "validation_fraction=None. Call calibrate(X) with held-out normal rows first."
            )
        return self.calibration_scores_

    def pvalues(self, X) -> np.ndarray:
        """Conformal p-values: the share of calibration rows at least as anomalous.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to test.

        Returns
        -------
        pvalues : ndarray of shape (n_samples,)
            ``(1 + #{calibration scores >= anomaly_score(x)}) / (n + 1)``, in
            ``(0, 1]``, with ``n`` calibration rows. For normal rows
            exchangeable with the calibration rows, the share with
            ``pvalues <= a`` is at most ``a``.
        """
        calibration = self._calibration()
        return conformal_pvalues(calibration, self.anomaly_score(X))

    @validate_params({"rate": [Interval(Real, 0, 1, closed="neither")]},
                     prefer_skip_nested_validation=True)
    def set_false_alarm_rate(self, rate: float):
        """Move ``offset_`` so that ``predict`` flags normal rows at most at ``rate``.

        After this call ``predict(X)`` is -1 exactly where
        ``pvalues(X) <= rate``. Only ``offset_`` changes: nothing is trained
        or scored again (the calibration rows' scores are stored). A later
        ``fit`` sets ``offset_`` from ``contamination`` again.

        Parameters
        ----------
        rate : float in (0, 1)
            The false-alarm rate: the share of normal rows that may be flagged.

        Returns
        -------
        self : object
            The detector, with ``offset_`` moved.
        """
        calibration = self._calibration()
        threshold = conformal_threshold(calibration, rate)
        if math.isinf(threshold):
            warnings.warn(
                f"With {calibration.shape[0]} calibration rows no p-value is as small as "
                f"{rate}: no row will be flagged. Calibrate on at least "
                f"{math.ceil(1 / rate) - 1} rows.", UserWarning, stacklevel=3)
        self.offset_ = -threshold
        return self
