"""Conformal p-values and thresholds with a stated false-alarm rate.

The anomaly scores of held-out normal rows (the calibration rows) give
every new row the p-value::

    p(x) = (1 + #{calibration rows scored at least s(x)}) / (n + 1)

For a new normal row exchangeable with the calibration rows,
``P(p(x) <= k / (n + 1)) = k / (n + 1)`` when scores do not tie, and at
most that with ties (Vovk et al., 2005; the split-conformal construction).
Flagging the rows with ``p(x) <= k / (n + 1)`` is therefore a threshold
whose false-alarm rate is ``k / (n + 1)``. For a requested rate ``a``,
``k`` is either the nearest attainable level, ``round(a (n + 1))`` (the
rate is then within ``1 / (2 (n + 1))`` of ``a``), or the largest level at
most ``a``, ``floor(a (n + 1))`` (the rate is then at most ``a``). The
guarantee is marginal (on average over calibration sets) and breaks when
the normal data drift away from the calibration rows.
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


def conformal_threshold(calibration: np.ndarray, rate: float, at_most: bool = False) -> float:
    """The anomaly score above which rows are flagged at ``rate`` (``inf``: none can be).

    The rows above it are those with ``p(x) <= k / (n + 1)``; ``k`` is
    ``round(rate (n + 1))``, or ``floor(rate (n + 1))`` with ``at_most``.
    """
    n = calibration.shape[0]
    level = rate * (n + 1)
    k = math.floor(level + 1e-9) if at_most else math.floor(level + 0.5)
    k = min(k, n)
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

    @validate_params({"rate": [Interval(Real, 0, 1, closed="neither")],
                      "at_most": ["boolean"]}, prefer_skip_nested_validation=True)
    def set_false_alarm_rate(self, rate: float, *, at_most: bool = False):
        """Move ``offset_`` so that ``predict`` flags normal rows at ``rate``.

        With ``n`` calibration rows, the attainable false-alarm rates are
        ``k / (n + 1)``: ``predict(X)`` becomes -1 exactly where
        ``pvalues(X) <= k / (n + 1)``, a rate that normal rows exchangeable
        with the calibration rows meet on average. Only ``offset_`` changes:
        nothing is trained or scored again (the calibration rows' scores are
        stored). A later ``fit`` sets ``offset_`` from ``contamination``
        again.

        Parameters
        ----------
        rate : float in (0, 1)
            The false-alarm rate: the share of normal rows to flag.
        at_most : bool, default=False
            False: the attainable rate nearest to ``rate`` (within
            ``1 / (2 (n + 1))``). True: the largest attainable rate not above
            ``rate``, so that the false-alarm rate is guaranteed not to exceed
            it (flagging exactly the rows with ``pvalues(X) <= rate``).

        Returns
        -------
        self : object
            The detector, with ``offset_`` moved.
        """
        calibration = self._calibration()
        threshold = conformal_threshold(calibration, rate, at_most)
        if math.isinf(threshold):
            n = calibration.shape[0]
            needed = math.ceil(1 / rate) - 1 if at_most else math.ceil(0.5 / rate) - 1
            warnings.warn(
                f"With {n} calibration rows no attainable false-alarm rate is close enough "
                f"to {rate}: no row will be flagged. Calibrate on at least {needed} rows.",
                UserWarning, stacklevel=3)
        self.offset_ = -threshold
        return self
