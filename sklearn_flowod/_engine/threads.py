"""How many torch intra-op threads a fit or a scoring pass uses.

Small networks on small batches run fastest on one thread: a parallel region
costs more than it saves, and with another program busy on the cores every
region waits for a descheduled thread (a default fit that takes seconds on
one thread took minutes on two under load). Threads are therefore given by
the size of the work, never beyond what the caller allows
(``torch.get_num_threads()``, which joblib's and Dask's workers limit), and
the caller's setting is restored afterwards.

Above :data:`PROBE_MACS` per training step, the size of the work no longer
says which is faster: on idle cores more threads win, on busy ones they
lose. A fit of such work on the CPU therefore measures it: its first steps
are timed on one thread and on the caller's count (:class:`ThreadProbe`),
and the rest of the fit runs on the faster.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator

import torch
from joblib import effective_n_jobs

from ..callbacks import Callback

#: Multiply-adds per evaluated batch that one more thread is given for.
MACS_PER_THREAD = 2**31
#: The same for work done in large matrix products (the neighbour search of
#: scoring, the mixing matrices of a wide network on a scoring batch): each
#: parallel region is long, so threads pay off far sooner.
PRODUCT_MACS_PER_THREAD = 2**26
#: Multiply-adds per training step from which a CPU fit times its thread counts.
PROBE_MACS = 2**26


def work_macs(module: torch.nn.Module, n_rows: int, passes: float = 1.0) -> float:
    """Multiply-adds of ``passes`` evaluations of ``module`` on ``n_rows`` rows.

    Every parameter is counted as one multiply-add per row (the weights of
    linear layers and the fixed mixing matrices dominate).
    """
    return passes * n_rows * sum(p.numel() for p in module.parameters())


def product_macs(module: torch.nn.Module, n_rows: int) -> float:
    """Multiply-adds of one evaluation of ``module`` on ``n_rows`` rows in products
    of at least :data:`PRODUCT_MACS_PER_THREAD` each (its matrices times the rows)."""
    sizes = (n_rows * p.numel() for p in module.parameters() if p.dim() >= 2)
    return float(sum(size for size in sizes if size >= PRODUCT_MACS_PER_THREAD))


def n_threads(n_jobs: int | None, macs: float, product_macs: float = 0.0) -> int:
    """Threads for work of ``macs`` multiply-adds per batch.

    Parameters
    ----------
    n_jobs : int or None
        The detector's ``n_jobs``: None chooses from the work (at least one
        thread, one more per :data:`MACS_PER_THREAD`, at most the caller's
        ``torch.get_num_threads()``); an int follows joblib's convention
        (-1: every processor).
    macs : float
        Multiply-adds of one batch in the network's many small operations.
    product_macs : float, default=0.0
        Multiply-adds of one batch in a few large matrix products, one more
        thread per :data:`PRODUCT_MACS_PER_THREAD`.

    Returns
    -------
    threads : int
    """
    if n_jobs is not None:
        return effective_n_jobs(n_jobs)
    wanted = max(macs // MACS_PER_THREAD, product_macs // PRODUCT_MACS_PER_THREAD)
    return max(1, min(torch.get_num_threads(), int(wanted)))


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the caller's."""
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:  # a ThreadProbe inside may have changed it too
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def thread_probes(n_jobs: int | None, macs: float, device: torch.device) -> list[Callback]:
    """``[ThreadProbe]`` for a CPU fit of ``macs`` per step at least :data:`PROBE_MACS`.

    Only where ``n_jobs`` is None and the caller allows more than one thread;
    otherwise ``[]`` (the threads of :func:`n_threads` are kept).
    """
    allowed = torch.get_num_threads()
    if n_jobs is not None or device.type != "cpu" or allowed == 1 or macs < PROBE_MACS:
        return []
    return [ThreadProbe((1, allowed))]


class ThreadProbe(Callback):
    """Time the first training steps on each thread count, then keep the fastest.

    The first step (warm-up) is not timed; the next ``rounds`` times
    ``len(candidates)`` steps cycle through the candidates, each step timed
    from its start to the next one's (CPU kernels run synchronously); from
    then on the candidate with the smallest median step time is used.
    """

    def __init__(self, candidates: tuple[int, ...], rounds: int = 3):
        self.schedule = [candidates[0], *(candidates * rounds)]

    def on_train_begin(self, state) -> None:
        self.times: dict[int, list[float]] = {threads: [] for threads in self.schedule}
        self.step, self.started = 0, 0.0

    def on_step_begin(self, state) -> None:
        if self.step > len(self.schedule):
            return
        if self.step > 1:  # the step just finished was timed
            self.times[self.schedule[self.step - 1]].append(time.perf_counter() - self.started)
        if self.step < len(self.schedule):
            torch.set_num_threads(self.schedule[self.step])
        else:
            torch.set_num_threads(min(self.times, key=lambda t: statistics.median(self.times[t])))
        self.step += 1
        self.started = time.perf_counter()
