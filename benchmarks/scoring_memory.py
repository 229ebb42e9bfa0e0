"""Scoring throughput and peak memory of one detector, in a fresh process.

Run by the speed benchmark as ``python -m benchmarks.scoring_memory
DETECTOR ROWS FEATURES [--train-rows N]``; prints one JSON object. A fresh
process holds nothing but this measurement, and runs with the threads its
environment gives torch.

The detector (defaults, two epochs; a peer such as ``"PyOD KNN"`` with its
defaults) is fitted on ``--train-rows`` standard normal float32 rows (10,000
by default), and the scoring is timed ``--repeats`` times (the fastest
counts). The rows to score are then written into one preallocated float32
array, chunk by chunk, so that making them needs no full-size temporary; the
resident memory just before scoring is the baseline; the kernel's peak
record is restarted there, and the scoring's own peak is the peak resident
memory during scoring minus that baseline.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import registry

_TRAIN_ROWS = 10_000
_FILL_CHUNK = 1_000_000


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_peak() -> None:
    """Restart the kernel's peak-resident-memory record (VmHWM) from the current size.

    ``ru_maxrss`` cannot be used: a process started by ``fork`` inherits its
    parent's record, and the benchmark's parent process is large.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_resident_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def measure(name: str, n_rows: int, n_features: int, seed: int = 0,
            train_rows: int = _TRAIN_ROWS, repeats: int = 1) -> dict:
    """Fit ``name`` briefly, then time its anomaly score on ``n_rows`` rows.

    The training and the scored rows are float32 (a peer searching float64
    training rows with float32 queries would take a slower path). The time is
    the fastest of ``repeats`` passes; the memory peak is the first pass's.
    ``flops_per_row``: the network's matmul FLOPs plus, with nearest
    neighbours, those of the distances to the reference rows (NaN for a peer).
    """
    entry = registry.named_detectors()[name]
    detector = entry.make(seed)
    package = entry.family == "package"
    if package:
        detector.set_params(max_epochs=2, device="cpu")
    rng = np.random.default_rng(seed)
    detector.fit(rng.standard_normal((train_rows, n_features), dtype=np.float32))
    X = np.empty((n_rows, n_features), dtype=np.float32)
    for start in range(0, n_rows, _FILL_CHUNK):
        stop = min(start + _FILL_CHUNK, n_rows)
        X[start:stop] = rng.standard_normal((stop - start, n_features), dtype=np.float32)
    entry.anomaly_score(detector, X[:1000])  # warm-up
    flops = float("nan")
    if package:
        with torch.no_grad():  # the FLOP counter's module hooks refuse inference tensors
            batch = detector._to_model_input(X[:4096], torch.float64)
            with FlopCounterMode(display=False) as counter:  # the network's matmul FLOPs
                detector._anomaly_score(detector.module_, batch)
            flops = counter.get_total_flops() / batch.shape[0]
        neighbours = getattr(detector, "neighbours_", None)
        if neighbours is not None:
            flops += 2.0 * neighbours.row_macs()
    before = _resident_bytes()
    _reset_peak()
    start = time.perf_counter()
    scores = entry.anomaly_score(detector, X)
    seconds = time.perf_counter() - start
    peak = _peak_resident_bytes()
    for _ in range(repeats - 1):
        del scores
        start = time.perf_counter()
        scores = entry.anomaly_score(detector, X)
        seconds = min(seconds, time.perf_counter() - start)
    return {
        "detector": name,
        "rows": n_rows,
        "features": n_features,
        "train_rows": train_rows,
        "score_s": seconds,
        "rows_per_s": n_rows / seconds,
        "flops_per_row": flops,
        "input_bytes": X.nbytes,
        "output_bytes": scores.nbytes,
        "baseline_rss_bytes": before,
        "peak_rss_bytes": peak,
        "scoring_peak_bytes": peak - before,
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector")
    parser.add_argument("rows", type=int)
    parser.add_argument("features", type=int)
    parser.add_argument("--train-rows", type=int, default=_TRAIN_ROWS)
    parser.add_argument("--repeats", type=int, default=1, help="time the fastest of these")
    args = parser.parse_args()
    print(json.dumps(measure(args.detector, args.rows, args.features,
                             train_rows=args.train_rows, repeats=args.repeats)))
