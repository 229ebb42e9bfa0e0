"""Validation of an explicit auxiliary sample ``X_aux`` passed to ``fit``."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.utils.validation import check_array

from .._input import dense_rows

#: Standardised X_aux whose per-feature mean or spread is further than this from
#: the training data's (in units of its standard deviation, or as a factor) is
#: reported as probably on another scale.
SCALE_WARNING_FACTOR = 10.0


def check_aux_data(detector, X: np.ndarray, X_aux) -> np.ndarray:
    """Validate ``X_aux`` against the fitted scaler and warn about the routing traps.

    Parameters
    ----------
    detector : BaseDeepDetector
        The detector being fitted; its ``mean_`` and ``scale_`` are set.
    X : ndarray of shape (n_samples, n_features)
        The validated training data.
    X_aux : array-like of shape (n_aux, n_features)
        The auxiliary sample.

    Returns
    -------
    X_aux : ndarray of shape (n_aux, n_features)
        The validated auxiliary sample, in the input feature space.

    Warns
    -----
    UserWarning
        When ``X_aux`` has as many rows as ``X`` (cross-validation would
        slice it like ``X``), or when, standardised with the training
        statistics, its mean or spread is on a very different scale (a
        routed ``X_aux`` is not transformed by earlier pipeline steps).
    """
    X_aux = dense_rows(_validated(detector, X_aux))
    if X_aux.shape[0] == X.shape[0]:
        warnings.warn(
            "X_aux has as many rows as X: cross-validation (e.g. GridSearchCV) "
            "slices such a fit parameter like X, so only the training fold's share "
            "of X_aux would be used. Give X_aux a different number of rows to keep "
            "it whole.",
            UserWarning, stacklevel=6)
    standardised = (X_aux - detector.mean_) / detector.scale_
    centre = np.abs(standardised.mean(axis=0))
    spread = standardised.std(axis=0)
    factor = SCALE_WARNING_FACTOR
    if np.any(centre > factor) or np.any((spread > factor) | (spread < 1.0 / factor)):
        warnings.warn(
            "X_aux is on a very different scale than X. In a Pipeline, a routed "
            "X_aux is not transformed by the earlier steps: transform it like X, "
            "or use the `auxiliary` generator instead.",
            UserWarning, stacklevel=6)
    return X_aux


def _validated(detector, X_aux):
    """``X_aux`` checked as scikit-learn checks ``X``, with errors naming ``X_aux``."""
    name = type(detector).__name__
    columns = getattr(X_aux, "columns", None)
    X_aux = check_array(X_aux, accept_sparse="csr", dtype=[np.float64, np.float32],
                        input_name="X_aux", estimator=detector, ensure_min_samples=1)
    if X_aux.shape[1] != detector.n_features_in_:
        raise ValueError(f"X_aux has {X_aux.shape[1]} features, but {name} is fitted on X "
                         f"with {detector.n_features_in_} features: give X_aux the columns of X.")
    names = getattr(detector, "feature_names_in_", None)
    if columns is not None and names is not None and list(map(str, columns)) != list(names):
        raise ValueError(f"X_aux's columns differ from those of X that {name} is fitted on: "
                         "give X_aux the columns of X, in their order.")
    return X_aux
