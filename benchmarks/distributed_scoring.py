"""Scoring throughput: ``score_partitions`` on a local dask cluster vs in-process.

:func:`measure` makes the Dask section of ``benchmarks/results/speed.md``
(``python -m benchmarks.speed --update --sections distributed``; the
``distributed`` extra installed).

Protocol: one small detector is fitted in-process. The rows are generated on
the cluster (float32, standard normal) and held in the workers' memory; the
in-process setting scores the same rows, gathered into one NumPy array. Each
repeat times, in turn, ``detector.<method>(X)`` in the driver (torch with
its default threads, then with one thread, the per-core baseline) and
``score_partitions(detector, X).compute()``
on a ``LocalCluster`` bound to 127.0.0.1 (scores gathered back into the
driver, detector shipped with the graph). The median over repeats is
reported; both results are checked equal.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


@dataclass(frozen=True)
class ScoringConfig:
    """What is scored, by which detector, on which cluster."""

    rows: int = 10_000_000
    features: int = 8
    chunk_rows: int = 500_000
    n_workers: int = 2
    threads_per_worker: int = 1
    repeats: int = 2
    method: str = "score_samples"
    train_rows: int = 20_000
    n_blocks: int = 2
    hidden_size: int = 16
    max_epochs: int = 2
    seed: int = 0


def _fit_detector(config: ScoringConfig):
    from sklearn_flowod import InvertibleOneClassDetector

    X_train = np.random.default_rng(config.seed).standard_normal(
        (config.train_rows, config.features)
    )
    detector = InvertibleOneClassDetector(
        n_blocks=config.n_blocks,
        hidden_size=config.hidden_size,
        max_epochs=config.max_epochs,
        device="cpu",
        random_state=config.seed,
    )
    return detector.fit(X_train)


def measure(config: ScoringConfig | None = None, *, log=print) -> pd.DataFrame:
    """Time in-process scoring against ``score_partitions`` on a LocalCluster.

    Parameters
    ----------
    config : ScoringConfig, optional
        Rows, features, chunking, cluster shape, repeats and detector size;
        the defaults score 1e7 rows of 8 features on 2 workers x 1 thread.
    log : callable, default=print
        Receives one line of progress per timing.

    Returns
    -------
    results : pandas.DataFrame
        One row per setting (``"in-process"`` with torch's default threads,
        ``"in-process, 1 torch thread"``, ``"dask LocalCluster"``) with
        ``rows``, ``features``, ``workers``, ``threads_per_worker``,
        ``torch_threads_per_task``, ``median_s``, ``min_s``, ``rows_per_s``
        (rows / median_s), ``repeats`` and ``equal_to_in_process``.
    """
    import dask.array as da
    from dask.distributed import Client, LocalCluster, wait

    from sklearn_flowod.distributed import score_partitions

    config = config or ScoringConfig()
    detector = _fit_detector(config)
    cluster = LocalCluster(
        n_workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        with Client(cluster) as client:
            client.wait_for_workers(config.n_workers, timeout=300)
            rng = da.random.default_rng(config.seed)
            X = rng.standard_normal(
                (config.rows, config.features),
                chunks=(config.chunk_rows, config.features),
                dtype=np.float32,
            ).persist()
            wait(X)
            X_local = X.compute()
            worker_threads = set(client.run(torch.get_num_threads).values())
            # Warm-up: workers import torch and receive the detector once.
            score_partitions(detector, X[: config.chunk_rows], config.method).compute()
            getattr(detector, config.method)(X_local[: config.chunk_rows])

            default_threads = torch.get_num_threads()
            local_s, single_s, cluster_s = [], [], []
            for repeat in range(config.repeats):
                start = time.perf_counter()
                local_result = getattr(detector, config.method)(X_local)
                local_s.append(time.perf_counter() - start)
                torch.set_num_threads(1)
                try:
                    start = time.perf_counter()
                    single_result = getattr(detector, config.method)(X_local)
                    single_s.append(time.perf_counter() - start)
                finally:
                    torch.set_num_threads(default_threads)
                start = time.perf_counter()
                cluster_result = score_partitions(detector, X, config.method).compute()
                cluster_s.append(time.perf_counter() - start)
                log(
                    f"repeat {repeat + 1}/{config.repeats}: in-process {local_s[-1]:.2f} s, "
                    f"in-process 1 thread {single_s[-1]:.2f} s, cluster {cluster_s[-1]:.2f} s"
                )
            equal_single = bool(np.array_equal(local_result, single_result))
            equal = bool(np.array_equal(local_result, cluster_result))
    finally:
        cluster.close()

    common = {"rows": config.rows, "features": config.features, "repeats": config.repeats}
    rows = [
        {
            "setting": "in-process",
            **common,
            "workers": 1,
            "threads_per_worker": 1,
            "torch_threads_per_task": default_threads,
            "median_s": statistics.median(local_s),
            "min_s": min(local_s),
        },
        {
            "setting": "in-process, 1 torch thread",
            **common,
            "workers": 1,
            "threads_per_worker": 1,
            "torch_threads_per_task": 1,
            "median_s": statistics.median(single_s),
            "min_s": min(single_s),
        },
        {
            "setting": "dask LocalCluster",
            **common,
            "workers": config.n_workers,
            "threads_per_worker": config.threads_per_worker,
            "torch_threads_per_task": ",".join(str(t) for t in sorted(worker_threads)),
            "median_s": statistics.median(cluster_s),
            "min_s": min(cluster_s),
        },
    ]
    results = pd.DataFrame(rows)
    results["rows_per_s"] = results["rows"] / results["median_s"]
    results["equal_to_in_process"] = [True, equal_single, equal]
    return results
