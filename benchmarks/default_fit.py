"""Default fits of the package's detectors next to IsolationForest, as a user makes them.

The ``default_fit`` section of :mod:`benchmarks.speed` runs this module in a
fresh process whose environment has the thread variables of the user's own
environment (speed.py's ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` removed), so
that torch runs with its default threads, as in a user's script::

    python -m benchmarks.default_fit OUT.json [--datasets NAME ...] [--wide ROWS FEATURES]
                                              [--busy-limit FACTOR]

Every detector is made as a user makes it: ``entry.make(seed)`` for each
package detector (:func:`benchmarks.registry.package_detectors`, only
``random_state`` set) and ``IsolationForest(random_state=seed)``. On each
table the fits alternate in one process: IsolationForest, the first package
detector, IsolationForest, the second, ..., IsolationForest. The
IsolationForest time of a detector (``iforest_fit_s``) is the median of the
IsolationForest fits right before and right after its fits, and ``ratio``
is the detector's fit time divided by it. On the ADBench tables (``idle``
and ``busy``) a detector's fit time is the median of :data:`REPEATS` fits,
each between two IsolationForest fits; the wide table is fitted once.
Conditions:

* ``idle``: the training rows of each ADBench table of :data:`DATASETS`
  (:func:`benchmarks.adbench.load_split`, seed 0).
* ``wide``: a synthetic :data:`WIDE_SHAPE` table (:func:`wide_table`).
* ``busy``: the ``idle`` fits again while ``os.cpu_count()`` helper processes
  spin on every core (:func:`busy_cores`); ``slowdown`` is the busy fit time
  divided by the idle one of the same table and detector. A busy fit is
  stopped after ``fit_limit_s`` = ``busy_limit`` (default
  :data:`BUSY_LIMIT_FACTOR`) times its idle fit time, at least
  :data:`BUSY_LIMIT_FLOOR_S` (``timed_out``; its ``fit_s`` and ``slowdown``
  are then NaN, and the slowdown is at least ``fit_limit_s`` over the idle
  time), so that a pathological slowdown does not hold the run for hours.

Before the timed fits, every detector is fitted once for one epoch on the
first table (untimed), so that no timed fit pays the fresh process's one-off
start-up costs (torch's first autograd pass, thread pools, lazy imports).
Each row records the 1-minute load average at the end of its detector's fit
and torch's thread count. The rows are written to ``OUT.json``, each with the
``commit`` this process ran and ``dirty`` (uncommitted changes in the tree).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import IsolationForest

from . import adbench, registry, report

#: Fits of each detector per ADBench table (their median is the row's fit time).
REPEATS = 3
#: The ADBench tables of the ``idle`` and ``busy`` conditions.
DATASETS = ("4_breastw", "29_Pima", "38_thyroid", "6_cardio", "40_vowels", "44_Wilt")
#: The tables of a ``--quick`` run.
QUICK_DATASETS = DATASETS[:2]
#: Rows and features of the ``wide`` table.
WIDE_SHAPE = (500, 1_500)
#: Rows and features of the ``wide`` table of a ``--quick`` run.
QUICK_WIDE_SHAPE = (200, 300)
#: Seconds the busy helper processes run before the first busy fit.
BUSY_RAMP_S = 2.0
#: A busy fit is stopped after this many times its idle fit time ...
BUSY_LIMIT_FACTOR = 10.0
#: ... or after this many seconds, whichever is longer.
BUSY_LIMIT_FLOOR_S = 10.0
#: A helper process: it spins until its parent, the measuring process, is gone.
SPIN = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass"


class FitTimeout(BaseException):
    """A fit ran past its time limit (not an ``Exception``: no fit may catch it)."""


def wide_table(n_rows: int, n_features: int, seed: int = 0) -> np.ndarray:
    """Standard normal rows times a random matrix, which correlates the columns.

    Parameters
    ----------
    n_rows, n_features : int
        Shape of the table.
    seed : int, default=0
        Seed of ``np.random.default_rng``.

    Returns
    -------
    ndarray of shape (n_rows, n_features)
    """
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((n_features, n_features)) / np.sqrt(n_features)
    return rng.standard_normal((n_rows, n_features)) @ mixing


def _raise_timeout(signum, frame):
    raise FitTimeout


def _fit(estimator, X: np.ndarray, limit_s: float | None = None) -> tuple[float, str, bool]:
    """Time ``estimator.fit(X)``, stopping it after ``limit_s`` seconds.

    Returns
    -------
    seconds : float
        Wall-clock seconds of the fit, NaN if it raised or was stopped.
    error : str
        The error it raised, "" if none.
    timed_out : bool
        Whether it was stopped at ``limit_s`` (by ``SIGALRM``).
    """
    previous = signal.signal(signal.SIGALRM, _raise_timeout) if limit_s else None
    start = time.perf_counter()
    try:
        if limit_s:
            signal.setitimer(signal.ITIMER_REAL, limit_s)
        estimator.fit(X)
        seconds = time.perf_counter() - start
    except FitTimeout:
        return float("nan"), "", True
    except Exception as error:  # recorded, so that one failure does not end the run
        return float("nan"), f"{type(error).__name__}: {error}", False
    finally:
        if limit_s:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return seconds, "", False


def alternating_fits(
    X: np.ndarray,
    makers: dict[str, Callable[[], object]],
    make_iforest: Callable[[], object],
    limits: dict[str, float] | None = None,
    repeats: int = 1,
) -> list[dict]:
    """Fit IsolationForest and each detector in turn, IsolationForest around each one.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The training rows.
    makers : dict of str to callable
        Detector name to a function making a fresh, unfitted detector.
    make_iforest : callable
        Makes a fresh, unfitted IsolationForest.
    limits : dict of str to float, optional
        Detector name to the seconds after which its fit is stopped.
    repeats : int, default=1
        Fits of each detector (a fresh one each time), each between two
        IsolationForest fits; ``fit_s`` is their median (NaN if any was
        stopped or raised), so that one descheduled sub-second fit does not
        make the row.

    Returns
    -------
    list of dict
        One row per detector: ``detector``, ``fit_s``, ``iforest_fit_s`` (the
        median of the IsolationForest fits right before and right after its
        fits), ``repeats``,
        ``ratio``, ``load_average`` (1 minute, at the end of the detector's
        fit), ``n_epochs``, ``device``, ``error``, ``fit_limit_s`` (NaN
        without a limit) and ``timed_out``.
    """
    limits = limits or {}
    last_iforest = _fit(make_iforest(), X)[0]
    rows = []
    for name, make in makers.items():
        limit = limits.get(name)
        around, fits, errors, stopped = [last_iforest], [], [], False
        for _ in range(repeats):
            detector = make()
            seconds, error, timed_out = _fit(detector, X, limit)
            load = os.getloadavg()[0]
            fits.append(seconds)
            stopped |= timed_out
            if error:
                errors.append(error)
            around.append(_fit(make_iforest(), X)[0])
        last_iforest = around[-1]
        seconds = float("nan") if errors or stopped else statistics.median(fits)
        iforest = statistics.median(around)
        n_epochs = getattr(detector, "n_epochs_", None)
        rows.append({
            "detector": name, "fit_s": seconds, "iforest_fit_s": iforest, "repeats": repeats,
            "ratio": seconds / iforest, "load_average": load,
            "n_epochs": None if n_epochs is None else int(n_epochs),
            "device": str(getattr(detector, "device_", "")), "error": "; ".join(errors),
            "fit_limit_s": float("nan") if limit is None else limit, "timed_out": stopped,
        })
    return rows


@contextlib.contextmanager
def busy_cores(n_workers: int | None = None) -> Iterator[list[subprocess.Popen]]:
    """Keep ``n_workers`` cores busy (default: all) with spinning helper processes.

    The processes (:data:`SPIN`) are started on entry and killed on exit,
    also when the body raises; they also stop when this process dies.
    """
    n_workers = (os.cpu_count() or 1) if n_workers is None else n_workers
    workers = []
    try:
        for _ in range(n_workers):
            workers.append(subprocess.Popen([sys.executable, "-c", SPIN]))
        time.sleep(BUSY_RAMP_S)
        yield workers
    finally:
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.wait()


def measure(
    datasets: tuple[str, ...] = DATASETS,
    wide_shape: tuple[int, int] = WIDE_SHAPE,
    seed: int = 0,
    busy_limit: float = BUSY_LIMIT_FACTOR,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """The ``idle``, ``wide`` and ``busy`` rows (see the module docstring).

    Parameters
    ----------
    datasets : tuple of str
        ADBench tables of the ``idle`` and ``busy`` conditions.
    wide_shape : (int, int)
        Rows and features of the ``wide`` table.
    seed : int, default=0
        ``random_state`` of every detector.
    busy_limit : float, default=BUSY_LIMIT_FACTOR
        A busy fit is stopped after this many times its idle fit time (at
        least :data:`BUSY_LIMIT_FLOOR_S`).
    log : callable
        Receives one progress line per fit.

    Returns
    -------
    list of dict
        The rows of :func:`alternating_fits` with ``condition``, ``dataset``,
        ``rows``, ``features``, ``torch_threads`` and, for ``busy``, ``slowdown``,
        ``busy_workers`` (the number of helper processes), ``busy_limit`` and
        ``busy_limit_floor_s``.
    """
    makers = {name: (lambda entry=entry: entry.make(seed))
              for name, entry in registry.package_detectors().items()}

    def make_iforest():
        return IsolationForest(random_state=seed)

    tables = {name: adbench.load_split(name, seed=0).X_train for name in datasets}
    for make in makers.values():  # the process's one-off start-up costs (untimed)
        _fit(make().set_params(max_epochs=1), tables[datasets[0]])
    _fit(make_iforest(), tables[datasets[0]])

    def run(condition: str, tables: dict[str, np.ndarray], limits=None,
            repeats: int = REPEATS) -> list[dict]:
        rows = []
        for dataset, X in tables.items():
            table_limits = (limits or {}).get(dataset)
            for row in alternating_fits(X, makers, make_iforest, table_limits, repeats):
                row.update(condition=condition, dataset=dataset, rows=X.shape[0],
                           features=X.shape[1], torch_threads=torch.get_num_threads())
                rows.append(row)
                log(f"default fit ({condition}) {dataset} {row['detector']}: "
                    f"{row['fit_s']:.2f} s, IsolationForest {row['iforest_fit_s']:.2f} s, "
                    f"ratio {row['ratio']:.1f}, load {row['load_average']:.2f}"
                    + (f" [{row['error']}]" if row["error"] else "")
                    + (f" [stopped at {row['fit_limit_s']:.0f} s]" if row["timed_out"] else ""))
        return rows

    idle = run("idle", tables)
    wide = run("wide", {"wide": wide_table(*wide_shape, seed=seed)}, repeats=1)
    idle_s = {(row["dataset"], row["detector"]): row["fit_s"] for row in idle}
    limits = {dataset: {detector: max(busy_limit * seconds, BUSY_LIMIT_FLOOR_S)
                        for (table, detector), seconds in idle_s.items()
                        if table == dataset and np.isfinite(seconds)}
              for dataset in tables}
    with busy_cores() as workers:
        busy = run("busy", tables, limits)
    for row in busy:
        row["slowdown"] = row["fit_s"] / idle_s[row["dataset"], row["detector"]]
        row.update(busy_workers=len(workers), busy_limit=busy_limit,
                   busy_limit_floor_s=BUSY_LIMIT_FLOOR_S)
    return idle + wide + busy


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure and write the rows, with their commit, to the JSON file named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the JSON file the rows are written to")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--wide", nargs=2, type=int, default=list(WIDE_SHAPE),
                        metavar=("ROWS", "FEATURES"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--busy-limit", type=float, default=BUSY_LIMIT_FACTOR,
                        help="stop a busy fit after this many times its idle fit time")
    args = parser.parse_args(argv)
    rows = measure(tuple(args.datasets), tuple(args.wide), args.seed, args.busy_limit,
                   log=lambda message: print(message, flush=True))
    commit, dirty = report.this_run()  # the code this process ran
    rows = [{**row, "commit": commit, "dirty": dirty} for row in rows]
    args.out.write_text(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
