"""How many torch intra-op threads a fit or a scoring pass uses.

Small networks on small batches run fastest on one thread: a parallel region
costs more than it saves, and with another program busy on the cores every
region waits for a descheduled thread (a default fit that takes seconds on
one thread took minutes on two under load). Threads are therefore given by
the size of the work, never beyond what the caller allows
(``torch.get_num_threads()``, which joblib's and Dask's workers limit), and
the caller's setting is restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from joblib import effective_n_jobs

#: Multiply-adds per evaluated batch that one more thread is given for.
MACS_PER_THREAD = 2**31


def work_macs(module: torch.nn.Module, n_rows: int, passes: float = 1.0) -> float:
    """Multiply-adds of ``passes`` evaluations of ``module`` on ``n_rows`` rows.

    Every parameter is counted as one multiply-add per row (the weights of
    linear layers and the fixed mixing matrices dominate).
    """
    return passes * n_rows * sum(p.numel() for p in module.parameters())


def n_threads(n_jobs: int | None, macs: float) -> int:
    """Threads for work of ``macs`` multiply-adds per batch.

    Parameters
    ----------
    n_jobs : int or None
        The detector's ``n_jobs``: None chooses from the work (at least one
        thread, one more per :data:`MACS_PER_THREAD`, at most the caller's
        ``torch.get_num_threads()``); an int follows joblib's convention
        (-1: every processor).
    macs : float
        Multiply-adds of one batch.

    Returns
    -------
    threads : int
    """
    if n_jobs is not None:
        return effective_n_jobs(n_jobs)
    return max(1, min(torch.get_num_threads(), int(macs // MACS_PER_THREAD)))


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the caller's."""
    before = torch.get_num_threads()
    if threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
