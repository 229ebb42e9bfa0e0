"""Rows per scoring batch, from scikit-learn's ``working_memory``."""

from __future__ import annotations

import torch
from sklearn.utils._chunking import get_chunk_n_rows

#: On a CPU at most this many rows per batch: a batch's intermediate arrays
#: then stay in the processor's caches (of 1,024, 1,536 and 2,048 rows the
#: flows scored fastest with 1,536; 65,536-row batches about half as fast).
CPU_MAX_ROWS = 1_536


def scoring_rows(module: torch.nn.Module, n_features: int, n_rows: int,
                 device: torch.device, extra_row_bytes: int = 0) -> int:
    """Rows per scoring batch of ``module`` on ``device`` for ``n_rows`` rows.

    A row's working set is taken as the outputs of every layer of the
    network plus a few copies of the row itself, in float64, plus
    ``extra_row_bytes`` (e.g. its distances to reference rows); the batch is
    as many rows as fit in ``sklearn.get_config()["working_memory"]`` (at
    least one; see :func:`sklearn.utils.get_chunk_n_rows`), on a CPU at most
    :data:`CPU_MAX_ROWS`.
    """
    widths = sum(m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear))
    row_bytes = 8 * (widths + 4 * n_features) + extra_row_bytes
    rows = get_chunk_n_rows(row_bytes=row_bytes, max_n_rows=max(n_rows, 1))
    return min(rows, CPU_MAX_ROWS) if device.type == "cpu" else rows
