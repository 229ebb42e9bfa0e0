"""Per-feature attributions: how much of a row's anomaly score each feature explains.

For a row ``x`` and a feature ``j``, the attribution is the drop of the
anomaly score when feature ``j`` alone is moved to its most typical value
given the others, found by a 1-D search over the quantiles of that feature
in the training rows (``feature_quantiles_``), refined by one parabolic step::

    a_j(x) = max(0, s(x) - min_v s(x with x_j = v))

with ``s`` the detector's anomaly score (higher = more anomalous). For a
density model ``s = -log p``, so ``a_j`` is how much the log-density rises
when feature ``j`` is set to a likely value given the other features: a
feature that breaks the data's correlations is found even when its own
value is typical. The search is over the feature's own training values, so
discrete columns are only tried at values they take.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

#: Quantile levels of each training column that the 1-D search tries.
N_SEARCH_VALUES = 6


def feature_quantiles(X: np.ndarray, n_values: int = N_SEARCH_VALUES) -> np.ndarray:
    """The ``n_values`` mid-quantiles of every column of ``X``, shape ``(n_values, n_features)``."""
    levels = (np.arange(n_values) + 0.5) / n_values
    return np.quantile(X, levels, axis=0)


def score_drops(score, module, batch: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Attributions of a model-space batch, shape ``(n_rows, n_features)``.

    ``values`` holds every feature's candidate values in model space, sorted,
    shape ``(n_values, n_features)``; the batch may have more columns than
    ``n_features`` (the padding of 1-D data), which are never moved. Each
    row is scored with feature ``j`` set to each value in turn; then once
    more at the vertex of the parabola through the best value and its two
    neighbours (kept between them), which is the exact minimum wherever the
    score is quadratic in ``x_j`` there. Columns whose candidates repeat
    (discrete ones) are only tried at their values.
    """
    n_rows, n_columns = batch.shape
    n_values, n_features = values.shape
    moved = torch.eye(n_features, n_columns, dtype=torch.bool, device=batch.device)[:, None, :]

    def moved_scores(candidates: torch.Tensor) -> torch.Tensor:  # (..., n_features, k)
        rows = torch.where(moved, candidates[..., None], batch[:, None, None, :])
        scores = score(module, rows.reshape(-1, n_columns)).reshape(n_rows, n_features, -1)
        return torch.nan_to_num(scores, nan=torch.inf)  # not finite: the most anomalous

    grid = values.T.contiguous()  # (n_features, n_values)
    scores = moved_scores(grid[None])
    best = scores.argmin(dim=2, keepdim=True).clamp(1, max(n_values - 2, 1))
    if n_values >= 3:
        around = best + torch.arange(-1, 2, device=batch.device)
        v = grid[None].expand(n_rows, -1, -1).gather(2, around)
        f = scores.gather(2, around)
        left, right = v[..., 1] - v[..., 0], v[..., 2] - v[..., 1]
        distinct = (left > 0) & (right > 0)
        slope_left = (f[..., 1] - f[..., 0]) / left.where(distinct, 1)
        slope_right = (f[..., 2] - f[..., 1]) / right.where(distinct, 1)
        curvature = slope_right - slope_left  # (v2 - v0) times the parabola's x^2 term
        step = 0.5 * (slope_right * left + slope_left * right) / curvature.where(curvature > 0, 1)
        vertex = (v[..., 1] - step).clamp(v[..., 0], v[..., 2])
        vertex = vertex.where(distinct & (curvature > 0), v[..., 1])
        scores = torch.cat([scores, moved_scores(vertex[..., None])], dim=2)
    # a non-finite score is the most anomalous: +inf; a feature whose move leaves it
    # non-finite explains none of it, one whose move makes it finite explains all (+inf)
    here = torch.nan_to_num(score(module, batch), nan=torch.inf)[:, None]
    best = scores.amin(dim=2)
    return torch.where(torch.isinf(best) & torch.isinf(here), 0.0, here - best).clamp_min(0.0)


class ExplanationMixin:
    """The ``explain`` method of the package's detectors."""

    def explain(self, X):
        """Per-feature attributions of the anomaly score of every row.

        For each row and feature: how much the method's own anomaly score
        falls when that feature alone is moved to
        its most typical value given the row's other features. The value is
        searched among the feature's quantiles in the training rows
        (``feature_quantiles_``). Larger means the feature contributes more
        to the row being anomalous; 0 means no value of the feature would
        make the row more normal. A feature that breaks a correlation is
        found even when its own value is typical.

        The score explained is the network's own (the paper's score, that of
        ``n_neighbors=None``): for the INN-based detectors the default
        ``anomaly_score`` also holds nearest-neighbour distances, which
        would make every evaluation of the search cost a distance to each
        reference row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to explain.

        Returns
        -------
        attributions : ndarray or DataFrame of shape (n_samples, n_features)
            In the units of the method's own score (for the flows nats of
            log-density). A row whose score is not finite (values beyond
            what the network can represent) gets ``inf`` for every feature
            whose move makes its score finite, 0 for the others. A DataFrame with ``X``'s
            columns and index when ``X`` is a DataFrame.

        Notes
        -----
        Each row costs ``n_features * (len(feature_quantiles_) + 1)``
        scoring evaluations, batched under scikit-learn's ``working_memory``.
        """
        check_is_fitted(self)
        if not hasattr(self, "feature_quantiles_"):
            raise NotFittedError(f"This {type(self).__name__} was fitted by a version of "
                                 "sklearn_flowod without explanations: fit it again.")
        values = self._to_model_input(self.feature_quantiles_, torch.float64)
        values = values[:, : self.n_features_in_]
        cost = values.numel() + values.shape[1]  # the grid, then one refined value

        def drops(module, batch):
            return score_drops(self._anomaly_score, module, batch, values)

        attributions = self._apply_in_batches(X, drops, cost=cost)
        if hasattr(X, "columns") and hasattr(X, "index"):
            import pandas as pd

            return pd.DataFrame(attributions, index=X.index, columns=X.columns)
        return attributions
