"""Known anomalies: rows of ``X`` that ``y`` marks -1, for a detector asked to use them.

``y`` follows scikit-learn's outlier convention: -1 is a known anomaly
(a confirmed fraud), +1 a normal or unlabelled row. The labelled rows travel
inside ``X``, so a ``Pipeline`` transforms them with the other rows and
cross-validation hands a fit only its training fold's labels.

Every detector takes a ``known_anomaly_weight`` parameter. ``None`` (the
default) ignores ``y`` as before. A float ``w >= 0`` makes ``fit`` split
``X`` by ``y``:

* the normal rows (``y == +1``) are the training data of the one-class
  method: its scaler, network, held-out rows, threshold and conformal
  calibration rows come from them alone;
* the known anomalies (``y == -1``) enter each detector's loss with weight
  ``w``, the way its paper's method takes anomalous samples (the detector's
  ``_loss`` says how). The score is the detector's usual one, of the network
  so trained; where it holds nearest-neighbour distances (``n_neighbors``
  set), two more parts compare the distance to the nearest known anomaly
  with that to the k-th normal neighbour (:mod:`sklearn_flowod.neighbours`),
  and the model then keeps the known anomalies beside its reference rows.
  Otherwise the model keeps no known anomaly.

Without a row marked -1 the fit is one-class, as with ``None``; with no row
marked +1 ``fit`` refuses, since the method learns from normal rows. Labels
in {0, 1} are refused too: ``1`` means an inlier to scikit-learn and an
anomaly to PyOD, so the error says how to convert.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_consistent_length, column_or_1d

#: The label of a known anomaly and of a normal (or unlabelled) row.
KNOWN_ANOMALY, NORMAL = -1, 1


def split_known(detector, X: np.ndarray, y) -> tuple[np.ndarray, np.ndarray | None]:
    """The normal rows of ``X`` and its known anomalies (None when there are none).

    ``y`` is ignored (``X`` is returned whole) when the detector's
    ``known_anomaly_weight`` is None or ``y`` is None.
    """
    if getattr(detector, "known_anomaly_weight", None) is None or y is None:
        return X, None
    name = type(detector).__name__
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    labels = np.unique(y)
    if not np.isin(labels, [KNOWN_ANOMALY, NORMAL]).all():
        shown = ", ".join(map(str, labels[:5])) + (" ..." if labels.size > 5 else "")
        raise ValueError(
            f"y holds the labels {{{shown}}}, but {name} with known_anomaly_weight set reads "
            "y as scikit-learn's outlier labels: -1 for a known anomaly, +1 for a normal or "
            "unlabelled row. With 1 for an anomaly and 0 for a normal row (PyOD's "
            "convention), pass np.where(y == 1, -1, 1).")
    known = y == KNOWN_ANOMALY
    if known.all():
        raise ValueError(f"All {X.shape[0]} rows of X are marked -1 (known anomalies) in y; "
                         f"{name} learns from normal rows (+1) and needs some.")
    return X[~known], (X[known] if known.any() else None)


class KnownAnomalySampler:
    """Draws training batches of known anomalies, with the training noise.

    Parameters
    ----------
    rows : Tensor of shape (n_known, n_features)
        The known anomalies as the network sees them (standardised, float32),
        on the training device.
    noise_std : float
        Standard deviation of the Gaussian noise the normal batches get
        (the same smoothing for both, as for ``X_aux``).
    """

    def __init__(self, rows: torch.Tensor, noise_std: float = 0.0):
        self.rows, self.noise_std = rows, noise_std

    def sample(self, n_rows: int, generator: torch.Generator) -> torch.Tensor:
        """``n_rows`` known anomalies drawn with replacement, with noise."""
        picked = torch.randint(self.rows.shape[0], (n_rows,), generator=generator,
                               device=self.rows.device)
        batch = self.rows[picked]
        if self.noise_std > 0:
            noise = torch.randn(batch.shape, generator=generator, device=batch.device,
                                dtype=batch.dtype)
            batch = batch + self.noise_std * noise
        return batch
