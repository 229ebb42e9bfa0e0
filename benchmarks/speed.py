"""Training and scoring speed of the package's detectors, against the machine's limit.

Usage (from the project root, ``pip install -e ".[bench,distributed]"``)::

    python -m benchmarks.speed            # the full run (its duration: see speed.md)
    python -m benchmarks.speed --quick    # a small grid, to check that it runs

Every measurement runs with ``--threads`` torch threads (default 1: the
networks are small, one thread per process is their fastest use of a core,
and the matmul rate and every MFU then refer to one core).

Writes ``benchmarks/results/speed.csv`` (one row per measurement, a
``section`` column says which, ``commit`` and ``dirty`` the code it was
made with; rows kept by ``--update`` keep their own), ``speed.md`` (the tables) and
``docs/figures/speed_fit_time.png`` (fit time against the number of rows).
Sections:

* ``matmul``: the dense float32 and float64 matrix-product rates of this
  machine with the threads the run uses; model-FLOP utilisation (MFU) is
  measured against them (:mod:`benchmarks.flops`).
* ``throughput``: training rows per second of every package detector on
  standard normal data, n rows x d features, at its default batch size and
  at a large batch, timed inside the main training loop
  (:mod:`benchmarks.instrumented_fit`), with the matmul FLOPs of a training
  step and the MFU (against a matmul rate measured beside each measurement).
* ``fit_time``: the default fit's wall-clock time for every n (d = 32).
* ``convergence``: on a synthetic fraud-like table, the held-out AUROC after
  every epoch of a 100-epoch run of each detector, the time its default fit
  needs to come within 0.5 AUROC points of that converged value, and the
  same for a plain torch + FrEIA training loop of the flow's network
  (:mod:`benchmarks.reference_flow`); the overhead ratio is the ratio of
  their training rows per second, the time ratio that of their times to the
  reference's converged AUROC.
* ``large_table``: the flows' default fit on a 280,000 x 30 fraud-like table.
* ``scoring``: rows per second of every detector's anomaly score beside PyOD's
  kNN and IsolationForest on the same rows, at 30 features (10,000 training
  rows, 1e6 rows scored) and 512 features (5,000 training rows, 2e5 rows),
  each in a fresh process with torch's default threads
  (:mod:`benchmarks.scoring_memory`); the peak memory of scoring 1e7 rows;
  matmul FLOPs per row (MFU against a float64 matmul rate measured beside
  each measurement), and the reference loop's float32 scoring rate.
* ``pyod``: PyOD's DeepSVDD and AutoEncoder fit throughput at the same epochs.
* ``distributed``: scoring 1e7 rows with ``score_partitions`` on a local Dask
  cluster against in-process (:mod:`benchmarks.distributed_scoring`).
* ``default_fit``: what a user gets, in a fresh process with torch's default
  threads (the thread variables of the user's environment, not ``--threads``):
  the default fit time of every package detector, made with only
  ``random_state`` set, divided by that of ``IsolationForest(random_state=0)``
  fitted alternately with them, on the training rows of six ADBench tables;
  the same while helper processes keep every core busy (slowdown: busy over
  idle fit time; a busy fit is stopped after 10 times its idle time, at
  least 10 s); and on a wide synthetic table, 500 x 1,500
  (:mod:`benchmarks.default_fit`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import page_state, registry, report
from .default_fit import BUSY_LIMIT_FACTOR, QUICK_WIDE_SHAPE, WIDE_SHAPE
from .default_fit import DATASETS as DEFAULT_FIT_DATASETS
from .default_fit import QUICK_DATASETS as QUICK_DEFAULT_FIT_DATASETS
from .flops import matmul_rate
from .instrumented_fit import first_time_reaching, instrumented_fit
from .reference_flow import reference_scoring_rate, train_reference_flow

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIGURE_DIR = Path(__file__).resolve().parent.parent / "docs" / "figures"
LARGE_BATCH = 4096
#: AUROC points below the converged value that still count as converged.
TOLERANCE = 0.005
#: A throughput cell is the fastest of up to this many fits, repeated while
#: they have taken less than FIT_BUDGET_S seconds in all.
FIT_REPEATS = 3
FIT_BUDGET_S = 5.0

FULL = {
    "rows": [1_000, 10_000, 100_000],
    "features": [8, 32, 128, 512],
    "compile_features": [32, 128],
    "throughput_rows": 40_960,  # 10 batches of 4,096 rows per epoch
    "convergence_rows": 20_000,
    "convergence_epochs": 100,
    "large_rows": 280_000,
    # (training rows, rows scored, features): every detector and peer
    "scoring": [(10_000, [1_000_000], 30), (5_000, [200_000], 512)],
    # (detector, training rows, rows scored, features): the memory of 1e7 rows
    "scoring_memory": [("FlowDetector", 10_000, 10_000_000, 30),
                       ("PyOD KNN", 10_000, 10_000_000, 30)],
    "distributed_rows": 10_000_000,
    "default_fit_datasets": DEFAULT_FIT_DATASETS,
    "default_fit_wide": WIDE_SHAPE,
    "default_fit_busy_limit": BUSY_LIMIT_FACTOR,
}
QUICK = {
    "rows": [1_000, 10_000],
    "features": [8, 32],
    "compile_features": [32],
    "throughput_rows": 2_000,
    "convergence_rows": 4_000,
    "convergence_epochs": 5,
    "large_rows": 20_000,
    "scoring": [(2_000, [20_000], 30), (1_000, [5_000], 64)],
    "scoring_memory": [("FlowDetector", 2_000, 100_000, 30)],
    "distributed_rows": 1_000_000,
    "default_fit_datasets": QUICK_DEFAULT_FIT_DATASETS,
    "default_fit_wide": QUICK_WIDE_SHAPE,
    "default_fit_busy_limit": 3.0,
}


def _make(entry, **params):
    detector = entry.make(0)
    return detector.set_params(device="cpu", **params)


def _configurations(entry, d: int, grid: dict):
    """(label, parameters) of the training set-ups measured for one detector."""
    default_batch = entry.make(0).batch_size
    configs = [(f"batch {batch}", {"batch_size": batch})
               for batch in sorted({default_batch, LARGE_BATCH})]
    if "compile" in entry.make(0).get_params() and d in grid["compile_features"]:
        configs.append((f"batch {LARGE_BATCH}, compiled",
                        {"batch_size": LARGE_BATCH, "compile": True}))
    return configs


def _warm_up(entry, params: dict, X) -> None:
    """Compile a compiled set-up's graphs, as a fresh process would, before it is timed.

    The graphs compiled for earlier cells are dropped first: otherwise a term
    compiled before for other shapes is recompiled with symbolic shapes
    (dynamo's automatic dynamic shapes), slower code than a process that fits
    one configuration gets.
    """
    if params.get("compile"):
        torch._dynamo.reset()
        _make(entry, max_epochs=1, validation_fraction=None, **params).fit(X)


def throughput(grid: dict, rates: dict, log) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for d in grid["features"]:
        X = rng.standard_normal((grid["throughput_rows"], d))
        for name, entry in registry.package_detectors().items():
            for label, params in _configurations(entry, d, grid):
                _warm_up(entry, params, X)
                record, rate = _timed_beside_matmul(
                    lambda entry=entry, params=params, X=X: instrumented_fit(
                        _make(entry, max_epochs=2, validation_fraction=None, **params), X))
                rows.append({
                    "section": "throughput", "detector": name, "setup": label,
                    "rows": X.shape[0], "features": d,
                    "samples_per_s": record.samples_per_s,
                    "flops_per_sample": record.flops_per_sample,
                    "matmul_rate": rate,
                    "mfu": record.flops_per_sample * record.samples_per_s / rate,
                    "mfu_run_rate": (record.flops_per_sample * record.samples_per_s
                                     / rates["float32"]),
                })
                log(f"throughput {name} d={d} {label}: "
                    f"{record.samples_per_s:,.0f} rows/s, MFU {rows[-1]['mfu']:.1%} "
                    f"({rows[-1]['mfu_run_rate']:.1%} of the run's rate)")
    return rows


def _timed_beside_matmul(fit, repeats: int = FIT_REPEATS, budget_s: float = FIT_BUDGET_S):
    """The fastest of up to ``repeats`` instrumented fits, and the float32 matmul rate.

    Fits are repeated while they have taken less than ``budget_s`` in all; the
    matmul rate is taken around them (:func:`_beside_matmul`).
    """

    def fastest():
        best, spent = None, 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            record = fit()
            spent += time.perf_counter() - start
            if best is None or record.samples_per_s > best.samples_per_s:
                best = record
            if spent >= budget_s:
                break
        return best

    return _beside_matmul(fastest, torch.float32)


def _beside_matmul(measure, dtype: torch.dtype):
    """``measure()`` and the ``dtype`` matmul rate measured right before and after it.

    The higher of the two rates is returned, so that an MFU compares rates
    taken under the same conditions of the machine (a shared host's speed
    drifts over a run).
    """
    before = matmul_rate(dtype, seconds=1.0)
    result = measure()
    return result, max(before, matmul_rate(dtype, seconds=1.0))


def fit_time(grid: dict, log) -> list[dict]:
    rows = []
    rng = np.random.default_rng(1)
    for n in grid["rows"]:
        X = rng.standard_normal((n, 32))
        for name, entry in registry.package_detectors().items():
            detector = _make(entry)
            start = time.perf_counter()
            detector.fit(X)
            seconds = time.perf_counter() - start
            rows.append({"section": "fit_time", "detector": name, "rows": n, "features": 32,
                         "fit_s": seconds, "n_epochs": detector.n_epochs_})
            log(f"fit time {name} n={n}: {seconds:.1f} s")
    return rows


def _fraud_split(n_rows: int, n_features: int = 30, seed: int = 0):
    from sklearn_flowod.datasets import make_fraud_like

    n_test = max(n_rows // 4, 2_000)
    X, y = make_fraud_like(n_rows + n_test, n_components=n_features - 4, random_state=seed)
    X_train = X[:n_rows][y[:n_rows] == 0]
    return X_train, (X[n_rows:], y[n_rows:])


#: The reference loop each detector's main loop is compared with: the one
#: computing the same loss (the contrastive flow's two passes per row, or
#: the maximum-likelihood loop).
REFERENCES = {"flow": "reference FrEIA loop (batch 256)",
              "contrastive": "reference contrastive FrEIA loop (batch 256)"}


def _reference_of(name: str) -> str:
    return "contrastive" if name.startswith("ContrastiveFlowDetector") else "flow"


def convergence(grid: dict, log) -> list[dict]:
    X_train, evaluation = _fraud_split(grid["convergence_rows"])
    epochs = grid["convergence_epochs"]
    rows, references = [], {}
    for kind, label in REFERENCES.items():
        curve = train_reference_flow(X_train, evaluation, epochs=epochs,
                                     contrastive=kind == "contrastive")
        final = curve[-1][2]
        references[kind] = {
            "auroc": final, "time": first_time_reaching(curve, final - TOLERANCE),
            "rate": X_train.shape[0] * epochs / curve[-1][1],
        }
        rows.append({"section": "convergence", "detector": label, "reference": label,
                     "rows": X_train.shape[0], "features": X_train.shape[1],
                     "converged_auroc": final, "default_auroc": np.nan,
                     "time_to_converged_s": references[kind]["time"],
                     "epochs_to_converged": next(e for e, _, auroc in curve
                                                 if auroc >= final - TOLERANCE),
                     "time_ratio": 1.0, "samples_per_s": references[kind]["rate"],
                     "overhead_ratio": 1.0})
        log(f"{label}: AUROC {final:.4f} after {epochs} epochs, within 0.5 points "
            f"after {references[kind]['time']:.1f} s")
    setups = [(name, entry, {}) for name, entry in registry.package_detectors().items()]
    for name in ["FlowDetector", "ContrastiveFlowDetector"]:
        entry = registry.package_detectors()[name]
        defaults = entry.make(0)
        for batch in [1024, LARGE_BATCH]:
            # Adam's step grows with the square root of the batch (the noise of a
            # batch-mean gradient shrinks so)
            rate = defaults.learning_rate * math.sqrt(batch / defaults.batch_size)
            setups.append((f"{name} (batch {batch}, learning rate {rate:g}, compiled)", entry,
                           {"batch_size": batch, "learning_rate": rate, "compile": True}))
    for name, entry, params in setups:
        _warm_up(entry, params, X_train)
        long_detector = _make(entry, max_epochs=epochs, **params).fit(X_train)
        converged = _test_auroc(long_detector, evaluation)
        default = _make(entry, **params)
        record = instrumented_fit(default, X_train, evaluation=evaluation)
        seconds = record.time_to_auroc(converged - TOLERANCE)
        kind = _reference_of(name)
        reference = references[kind]
        rows.append({
            "section": "convergence", "detector": name,
            "reference": REFERENCES[kind], "rows": X_train.shape[0],
            "features": X_train.shape[1], "converged_auroc": converged,
            "default_auroc": _test_auroc(default, evaluation),
            "time_to_converged_s": seconds, "default_fit_s": record.fit_s,
            "reference_auroc": reference["auroc"],
            "time_to_reference_s": record.time_to_auroc(reference["auroc"] - TOLERANCE),
            "samples_per_s": record.samples_per_s,
        })
        rows[-1]["time_ratio"] = reference["time"] / rows[-1]["time_to_reference_s"]
        rows[-1]["overhead_ratio"] = record.samples_per_s / reference["rate"]
        log(f"convergence {name}: converged AUROC {converged:.4f}, reached in {seconds:.1f} s; "
            f"reference's AUROC reached in {rows[-1]['time_to_reference_s']:.1f} s; "
            f"overhead ratio {rows[-1]['overhead_ratio']:.2f}")
    return rows


def _test_auroc(detector, evaluation) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(evaluation[1], detector.anomaly_score(evaluation[0])))


def large_table(grid: dict, log) -> list[dict]:
    X_train, evaluation = _fraud_split(grid["large_rows"])
    rows = []
    for name in ["FlowDetector", "ContrastiveFlowDetector"]:
        entry = registry.package_detectors()[name]
        detector = _make(entry)
        record = instrumented_fit(detector, X_train, evaluation=evaluation)
        final = _test_auroc(detector, evaluation)
        best = max(auroc for _, _, auroc in record.curve)
        rows.append({
            "section": "large_table", "detector": name, "rows": X_train.shape[0],
            "features": X_train.shape[1], "default_fit_s": record.fit_s,
            "n_epochs": record.n_epochs, "default_auroc": final, "best_epoch_auroc": best,
            "samples_per_s": record.samples_per_s,
        })
        log(f"large table {name}: fit {record.fit_s:.1f} s, AUROC {final:.4f}")
    return rows


#: The peers whose scoring is timed beside the package's, in the same run.
SCORING_PEERS = ["PyOD KNN", "IsolationForest"]
#: A rows-per-second cell is the fastest of this many passes (this machine is shared).
SCORING_REPEATS = 2


def scoring(grid: dict, rates: dict, user_threads: dict[str, str | None], log) -> list[dict]:
    """Rows per second and peak memory of every detector's anomaly score.

    Each measurement runs in a fresh process with the user's thread variables
    (:func:`_user_environment`), so torch and the peers run with their default
    threads, as a user's script would; see :mod:`benchmarks.scoring_memory`.
    """
    rows = []
    names = [*registry.package_detectors(), *SCORING_PEERS]
    cells = [(name, train, n, d, SCORING_REPEATS) for train, sizes, d in grid["scoring"]
             for n in sizes for name in names]
    cells += [(name, train, n, d, 1) for name, train, n, d in grid["scoring_memory"]]
    for name, train, n, d, repeats in cells:
        out, rate = _beside_matmul(lambda name=name, n=n, d=d, train=train, repeats=repeats:
                                   subprocess.run(
            [sys.executable, "-m", "benchmarks.scoring_memory", name, str(n), str(d),
             "--train-rows", str(train), "--repeats", str(repeats)],
            capture_output=True, text=True, check=True, env=_user_environment(user_threads),
            cwd=Path(__file__).resolve().parent.parent,
        ), torch.float64)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        flops_per_s = result["flops_per_row"] * result["rows_per_s"]
        result.update(section="scoring", matmul_rate=rate, mfu=flops_per_s / rate,
                      mfu_run_rate=flops_per_s / rates["float64"])
        rows.append(result)
        log(f"scoring {name} d={d} train={train} n={n}: {result['rows_per_s']:,.0f} rows/s "
            f"({result['torch_threads']} threads), scoring peak "
            f"{result['scoring_peak_bytes'] / 2**20:,.0f} MiB")
    reference = reference_scoring_rate(30)
    rows.append({"section": "scoring", "detector": "reference FrEIA loop (float32)",
                 "rows": 200_000, "features": 30, "rows_per_s": reference})
    return rows


def pyod(grid: dict, log) -> list[dict]:
    n, epochs = grid["throughput_rows"], 5
    X = np.random.default_rng(2).standard_normal((n, 32))
    models = {}
    for name in ["PyOD DeepSVDD", "PyOD AutoEncoder"]:
        model = registry.pyod_peers()[name].make(0)
        if hasattr(model, "kwargs"):  # DeepSVDD, built at fit time (see the registry)
            model.kwargs["epochs"] = epochs
        else:
            model.set_params(epoch_num=epochs)
        models[name] = model
    for name in ["DeepSVDDDetector", "InvertibleOneClassDetector", "FlowDetector"]:
        models[name] = _make(registry.package_detectors()[name], max_epochs=epochs,
                             validation_fraction=None)
    rows = []
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
        rows.append({"section": "pyod", "detector": name, "rows": n, "features": 32,
                     "epochs": epochs, "samples_per_s": n * epochs / seconds})
        log(f"{name}: {rows[-1]['samples_per_s']:,.0f} rows/s")
    return rows


def distributed(grid: dict, log) -> list[dict]:
    try:
        from .distributed_scoring import ScoringConfig, measure
    except ImportError:  # pragma: no cover - the distributed extra is missing
        return []
    config = ScoringConfig(rows=grid["distributed_rows"], features=30, repeats=1)
    table = measure(config, log=log)
    return [{"section": "distributed", "detector": "InvertibleOneClassDetector (small)",
             "setting": row["setting"], "rows": row["rows"], "features": row["features"],
             "rows_per_s": row["rows_per_s"], "equal_to_in_process": row["equal_to_in_process"]}
            for row in table.to_dict("records")]


#: The thread variables that ``main`` sets to ``--threads``.
THREAD_VARIABLES = ["OMP_NUM_THREADS", "MKL_NUM_THREADS"]


def _user_environment(user_threads: dict[str, str | None]) -> dict[str, str]:
    """This process's environment with the thread variables as the user had them.

    ``user_threads`` maps each of :data:`THREAD_VARIABLES` to its value before
    ``main`` set it, ``None`` where it was not set (it is then removed).
    """
    env = dict(os.environ)
    for variable, value in user_threads.items():
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = value
    return env


def default_fit(grid: dict, user_threads: dict[str, str | None], log) -> list[dict]:
    """The rows of :mod:`benchmarks.default_fit`, measured in a fresh process.

    The process gets the user's thread variables (:func:`_user_environment`),
    so torch runs with its default threads, not ``--threads``.
    """
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "default_fit.json"
        wide_rows, wide_features = grid["default_fit_wide"]
        command = [sys.executable, "-m", "benchmarks.default_fit", str(out),
                   "--datasets", *grid["default_fit_datasets"],
                   "--wide", str(wide_rows), str(wide_features),
                   "--busy-limit", str(grid["default_fit_busy_limit"])]
        log("default fit: " + " ".join(command[1:]))
        subprocess.run(command, check=True, env=_user_environment(user_threads),
                       cwd=Path(__file__).resolve().parent.parent)
        rows = json.loads(out.read_text())
    return [{"section": "default_fit", **row} for row in rows]


# ---------------------------------------------------------------------- #
# Result files
# ---------------------------------------------------------------------- #
def _rows_per_s(value: float) -> str:
    return f"{value:,.0f}"


_COUNTS = ["rows", "features", "epochs", "n_epochs"]


def _counts_as_int(table: pd.DataFrame) -> pd.DataFrame:
    """Whole-number columns (read back from the CSV as floats) printed without decimals."""
    table = table.copy()
    for column in _COUNTS:
        if column in table.columns:
            table[column] = table[column].map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
    return table


def _tables(results: pd.DataFrame, rates: dict) -> str:
    parts = [
        "## This machine's dense matmul rate",
        "",
        f"float32: {rates['float32'] / 1e9:.1f} GFLOP/s, float64: {rates['float64'] / 1e9:.1f} "
        f"GFLOP/s; torch threads: {rates['threads']} (2048 x 2048 products, best of "
        "several). Model-FLOP utilisation (MFU) = matmul FLOPs per row x rows per second / "
        "this rate (float32 for training, the precision it runs in).",
        "",
    ]
    section = results[results["section"] == "throughput"]
    if len(section):
        pairs = zip(section["samples_per_s"], section["mfu"], strict=True)
        cells = section.assign(cell=[f"{_rows_per_s(v)} ({m:.0%})" for v, m in pairs])
        table = cells.pivot_table(index=["detector", "setup"], columns="features",
                                  values="cell", aggfunc="first")
        table.index = [f"{d}, {setup}" for d, setup in table.index]
        table.columns = [f"d = {int(c)}" for c in table.columns]
        low, high = section["matmul_rate"].min() / 1e9, section["matmul_rate"].max() / 1e9
        parts += ["## Training throughput: rows per second (MFU)", "",
                  f"{int(section['rows'].iloc[0]):,} standard normal rows; timed inside the "
                  "main training loop over two epochs (no validation split), the fastest "
                  f"of up to {FIT_REPEATS} such fits within {FIT_BUDGET_S:g} s. The MFU of "
                  "each cell is measured against the float32 matmul rate taken right "
                  "before and right after its fits (the higher of the two; they ranged from "
                  f"{low:.1f} to {high:.1f} GFLOP/s in this run), so that both rates come "
                  "from the same state of the machine; `speed.csv` also has the MFU "
                  "against the rate above (`mfu_run_rate`). Compiled cells are compiled by "
                  "a warm-up fit first, after the graphs of earlier cells were dropped. "
                  "FLOPs are those of the loss as written, for the contrastive flow both "
                  "terms on every row.", "",
                  report.markdown_table(table), ""]
    section = results[results["section"] == "fit_time"]
    if len(section):
        table = section.pivot_table(index="detector", columns="rows", values="fit_s")
        table.columns = [f"n = {int(c):,}" for c in table.columns]
        parts += ["## Default fit time in seconds (d = 32)", "",
                  "Figure: `docs/figures/speed_fit_time.png`.", "",
                  report.markdown_table(table), ""]
    section = results[results["section"] == "convergence"]
    if len(section):
        parts += _convergence_table(section)
    section = results[results["section"] == "large_table"]
    if len(section):
        table = section.set_index("detector").reindex(columns=[
            "rows", "features", "default_fit_s", "n_epochs", "samples_per_s",
            "default_auroc", "best_epoch_auroc"])
        for column in ["default_auroc", "best_epoch_auroc"]:
            table[column] = table[column] * 100
        parts += ["## Default fit on a 280,000-row fraud-like table", "",
                  "Training rows are the normal rows among the first 280,000 of "
                  "`make_fraud_like` with 30 columns; best epoch AUROC: the best held-out "
                  "AUROC seen after any epoch of the same fit.", "",
                  report.markdown_table(_counts_as_int(table), "{:.2f}"), ""]
    section = results[results["section"] == "scoring"]
    if len(section):
        parts += _scoring_tables(section)
    section = results[results["section"] == "pyod"]
    if len(section):
        table = section.set_index("detector")[["rows", "features", "epochs", "samples_per_s"]]
        table = table.assign(samples_per_s=table["samples_per_s"].map(_rows_per_s))
        parts += ["## Fit throughput next to PyOD (rows per second)", "",
                  "Whole `fit` at each library's defaults except the epochs.", "",
                  report.markdown_table(_counts_as_int(table)), ""]
    section = results[results["section"] == "distributed"]
    if len(section):
        table = section.set_index("setting")[["rows", "features", "rows_per_s",
                                              "equal_to_in_process"]]
        table = table.assign(rows_per_s=table["rows_per_s"].map(_rows_per_s))
        parts += ["## Scoring on a local Dask cluster", "",
                  "`score_partitions` on a `LocalCluster` (2 workers x 1 thread) against "
                  "in-process scoring of the same rows; see `distributed_scoring.py`.", "",
                  report.markdown_table(_counts_as_int(table)), ""]
    section = results[results["section"] == "default_fit"]
    if len(section):
        parts += _default_fit_tables(section)
    return "\n".join(parts)


def _scoring_tables(section: pd.DataFrame) -> list[str]:
    """Rows per second beside the peers, per table shape; then memory."""
    measured = section[section["detector"] != "reference FrEIA loop (float32)"]
    parts = ["## Scoring: rows per second beside kNN and IsolationForest", "",
             "The anomaly score (default parameters; the package's detectors trained two "
             "epochs, which does not change the cost of a row) of float32 standard normal "
             "rows, in a fresh process per cell with torch's default threads (the user's "
             "thread variables), fitted on the float32 training rows given; the fastest of "
             f"{SCORING_REPEATS} passes over the rows. The INN-based "
             "detectors keep their training split (85% of those rows) as neighbours, "
             f"PyOD KNN all of them. Relative: rows per second over {SCORING_PEERS[0]}'s "
             "in the same column.", ""]
    for (d, train, n), cell in measured.groupby(["features", "train_rows", "rows"]):
        if cell["detector"].nunique() < 3:  # a memory-only cell
            continue
        rates = cell.set_index("detector")["rows_per_s"]
        peer = rates.get(SCORING_PEERS[0], np.nan)
        table = pd.DataFrame({"rows per second": rates.map(_rows_per_s),
                              f"over {SCORING_PEERS[0]}": (rates / peer).map("{:.2f}".format),
                              "threads": cell.set_index("detector")["torch_threads"].map(
                                  "{:.0f}".format)})
        parts += [f"### {int(d)} features, {int(train):,} training rows, {int(n):,} rows scored",
                  "", report.markdown_table(table), ""]
    table = measured.set_index(["detector", "features", "rows"])[
        ["rows_per_s", "flops_per_row", "scoring_peak_bytes", "output_bytes"]].copy()
    table["rows_per_s"] = table["rows_per_s"].map(_rows_per_s)
    for column in ["scoring_peak_bytes", "output_bytes"]:
        table[column] = table[column] / 2**20
    table = table.rename(columns={"scoring_peak_bytes": "scoring peak (MiB)",
                                  "output_bytes": "output (MiB)"})
    table.index = [f"{name}, d = {int(d)}, {int(n):,} rows" for name, d, n in table.index]
    reference = section[section["detector"] == "reference FrEIA loop (float32)"]
    parts += ["### Memory and FLOPs", "",
              "Scoring peak: peak resident memory minus the resident memory just before "
              "scoring (input already in memory; the output array is part of the peak). "
              "FLOPs per row are the network's float64 matmul FLOPs plus, with neighbours, "
              "the float32 products of both searches. No utilisation is given: the cells run "
              "on torch's default threads and in two precisions, while the matmul rates "
              "above are those of one thread.",
              "", report.markdown_table(table, "{:,.0f}"), ""]
    if len(reference):
        parts += [f"A plain float32 FrEIA forward pass of the flow's network with untrained "
                  f"weights (the reference loop) scores "
                  f"{_rows_per_s(reference['rows_per_s'].iloc[0])} rows per second at 30 "
                  "features on one thread.", ""]
    return parts


def _bounded(values: pd.Series, lower_bound: pd.Series, statistic: str) -> str:
    """The median or maximum of ``values``, marked ≥ where a lower bound can change it.

    ``lower_bound`` flags the values that are only lower bounds (stopped fits):
    any of them can raise the maximum; the median only when one is at or
    below the upper of its middle positions in sorted order.
    """
    ordered = lower_bound[values.sort_values(kind="stable").index]
    if statistic == "max":
        result, bounded = values.max(), ordered.any()
    else:
        result, bounded = values.median(), ordered.iloc[: len(values) // 2 + 1].any()
    return ("≥ " if bounded else "") + f"{result:.2f}"


def _load_range(rows: pd.DataFrame) -> str:
    return f"{rows['load_average'].min():.2f} to {rows['load_average'].max():.2f}"


def _default_fit_tables(section: pd.DataFrame) -> list[str]:
    """The default_fit section: ratios to IsolationForest, busy slowdown, wide table."""
    threads = ", ".join(str(int(t)) for t in sorted(section["torch_threads"].unique()))
    idle = section[section["condition"] == "idle"]
    busy = section[section["condition"] == "busy"]
    wide = section[section["condition"] == "wide"]
    parts = []
    if len(idle):
        datasets = list(pd.unique(idle["dataset"]))
        ratios = idle.pivot_table(index="detector", columns="dataset", values="ratio",
                                  dropna=False).reindex(columns=datasets)
        table = pd.concat([ratios.median(axis=1).rename("median ratio"), ratios], axis=1)
        table["median fit (s)"] = idle.groupby("detector")["fit_s"].median()
        iforest = idle.groupby("dataset")["iforest_fit_s"].median()
        parts += ["## Default fit time over IsolationForest's", "",
                  "Fit time of each package detector made with only `random_state` set "
                  "(the median of its fits, `repeats` in the CSV, each between two "
                  "IsolationForest fits), divided by that of `IsolationForest(random_state=0)` "
                  "fitted right beside it (the median of the IsolationForest fits right "
                  "before and right after its fits; the fits alternate in one process), on "
                  "the training rows of "
                  "`adbench.load_split(name, seed=0)`; median ratio: over the tables. A "
                  "fresh process with torch's default threads "
                  f"({threads}) and the thread variables of the user's environment. "
                  f"IsolationForest's fits took {iforest.min():.2f} to {iforest.max():.2f} s "
                  f"(median per table); 1-minute load average {_load_range(idle)}.", "",
                  report.markdown_table(table, "{:.1f}"), ""]
    if len(busy):
        both = busy.merge(idle[["dataset", "detector", "fit_s", "iforest_fit_s"]],
                          on=["dataset", "detector"], suffixes=("", "_idle"))
        stopped = both["timed_out"].astype(str) == "True"
        # a stopped fit's slowdown is at least its limit over the idle time
        slowdown = both["fit_s"].where(~stopped, both["fit_limit_s"]) / both["fit_s_idle"]
        table = pd.DataFrame({
            detector: [_bounded(slowdown[rows], stopped[rows], "median"),
                       _bounded(slowdown[rows], stopped[rows], "max")]
            for detector, rows in both.groupby("detector").groups.items()
        }, index=["median slowdown", "max slowdown"]).T
        iforest = both["iforest_fit_s"] / both["iforest_fit_s_idle"]
        table.loc["IsolationForest (fitted beside them)"] = [f"{iforest.median():.2f}",
                                                             f"{iforest.max():.2f}"]
        table.index.name = "detector"
        first = busy.iloc[0]
        parts += ["## Default fit under load: busy over idle fit time", "",
                  f"The same alternating fits while {int(first['busy_workers'])} helper "
                  "processes (one per core) spin in a Python loop; slowdown: busy fit time "
                  "over the idle fit time of the same table and detector; median and "
                  f"maximum over the {busy['dataset'].nunique()} tables (IsolationForest: "
                  "over every fit beside a detector). A busy fit was stopped after "
                  f"{first['busy_limit']:g} times its idle fit time, at least "
                  f"{first['busy_limit_floor_s']:g} s ({int(stopped.sum())} of {len(both)} "
                  "were); a stopped fit counts as its limit, and a statistic that such a "
                  "lower bound can change is marked ≥. 1-minute load average during the "
                  f"busy fits {_load_range(busy)} (idle: {_load_range(idle)}).", "",
                  report.markdown_table(table), ""]
    if len(wide):
        table = wide.set_index("detector")[["fit_s", "iforest_fit_s", "ratio", "n_epochs"]]
        table = table.rename(columns={"fit_s": "fit (s)",
                                      "iforest_fit_s": "IsolationForest fit (s)"})
        n_rows, n_features = int(wide["rows"].iloc[0]), int(wide["features"].iloc[0])
        parts += [f"## Default fit on a wide table ({n_rows:,} x {n_features:,})", "",
                  "Standard normal rows times a seeded random matrix (correlated "
                  "columns), fitted as above (idle, torch's default threads "
                  f"({threads})); the IsolationForest fits alternate with them.", "",
                  report.markdown_table(_counts_as_int(table), "{:.2f}"), ""]
    errors = section[section["error"].fillna("") != ""]
    if len(errors):
        parts += ["Fits that raised (blank cells above): " + "; ".join(
            f"{row.detector} on {row.dataset} ({row.condition}): {row.error}"
            for row in errors.itertuples()) + ".", ""]
    return parts


def _convergence_table(section: pd.DataFrame) -> list[str]:
    table = section.set_index("detector").reindex(columns=[
        "rows", "converged_auroc", "default_auroc", "time_to_converged_s",
        "default_fit_s", "time_to_reference_s", "time_ratio", "samples_per_s",
        "overhead_ratio"])
    for column in ["converged_auroc", "default_auroc"]:
        table[column] = table[column] * 100
    references = section[section["detector"] == section["reference"]]
    names = {REFERENCES["flow"]: "the maximum-likelihood loop",
             REFERENCES["contrastive"]: "the contrastive loop"}
    reached = [f"{names.get(row.detector, row.detector)} got there after "
               f"{int(row.epochs_to_converged)} epochs" for row in references.itertuples()]
    text = ("Converged AUROC: after 100 epochs of the same configuration (the "
            "references: their own 100-epoch value). Time to converged: fit time of the "
            "default configuration until its held-out AUROC, checked after every "
            "epoch, is within 0.5 points of that value. Each detector is compared with "
            "the reference loop that computes its loss: the contrastive flow with the "
            "contrastive loop (eq. 3, every batch and a feature-shuffled copy of it "
            "through the flow), every other detector with the maximum-likelihood "
            "loop. Overhead ratio: training rows per second of the detector's main loop "
            "(rows that went into its optimisation steps) divided by its reference "
            "loop's (both over their whole training); it compares loops that reach an "
            "equal final AUROC where the two converged AUROCs are within 0.5 points or "
            "the detector's is higher. Time ratio: the reference loop's time to within "
            "0.5 points of its 100-epoch AUROC divided by the detector's time to the "
            "same AUROC, the detector's set-up included (" + "; ".join(reached) + "). "
            "Compiled set-ups were compiled by a warm-up fit in the same process before "
            "they were timed, after the graphs compiled for earlier cells were dropped "
            "(as in a process that fits one configuration); their learning rate is the "
            "default's times the square root of the batch-size ratio. Fit times leave "
            "out the benchmark's own FLOP counting and AUROC checks.")
    return ["## Time to the converged AUROC on a fraud-like table", "", text, "",
            report.markdown_table(_counts_as_int(table), "{:.2f}"), ""]


def _figure(results: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    section = results[results["section"] == "fit_time"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, group in section.groupby("detector"):
        ax.plot(group["rows"], group["fit_s"], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="training rows n (d = 32)",
           ylabel="default fit time (s)", title="Fit time against the number of rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    page_state.stamp_png(path, ",".join(report.row_commits(section)))


SECTIONS = ["throughput", "fit_time", "convergence", "large_table", "scoring", "pyod",
            "distributed", "default_fit"]


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid")
    parser.add_argument("--sections", nargs="*", choices=SECTIONS, default=SECTIONS,
                        help="the sections to run (none, with --update: only rewrite the page)")
    parser.add_argument(
        "--update", action="store_true",
        help="keep the rows of the sections not run from the existing <name>.csv",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads of every measurement (and of the matmul rate the MFU refers to)",
    )
    parser.add_argument("--name", default="speed", help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    grid = QUICK if args.quick else FULL
    default_threads = torch.get_num_threads()
    # the user's own values, for the default_fit section's process
    user_threads = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    torch.set_num_threads(args.threads)
    for variable in THREAD_VARIABLES:  # the scoring subprocesses
        os.environ[variable] = str(args.threads)
    command = "python -m benchmarks.speed " + " ".join(sys.argv[1:] if argv is None else argv)

    def log(message):
        print(message, flush=True)

    started = time.perf_counter()
    page = report.header("Training and scoring speed", command.strip())
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    page += (f"- torch threads: {torch.get_num_threads()}; load average (1, 5, 15 min) "
             f"before the run: {load}\n")
    csv_path = args.out_dir / f"{args.name}.csv"
    earlier = pd.read_csv(csv_path) if args.update and csv_path.exists() else None
    if earlier is not None:  # the kept sections' utilisation was computed with these
        matmul = earlier[earlier["section"] == "matmul"].set_index("dtype")
        rates = {"float32": float(matmul.loc["float32", "flops_per_s"]),
                 "float64": float(matmul.loc["float64", "flops_per_s"]),
                 "threads": int(matmul["torch_threads"].iloc[0])}
    else:
        rates = {"float32": matmul_rate(torch.float32), "float64": matmul_rate(torch.float64),
                 "threads": torch.get_num_threads()}
    rows = [] if earlier is not None else [
        {"section": "matmul", "detector": "", "dtype": dtype, "flops_per_s": rates[dtype],
         "torch_threads": rates["threads"]} for dtype in ["float32", "float64"]]
    for section in args.sections:
        if section == "throughput":
            rows += throughput(grid, rates, log)
        elif section == "fit_time":
            rows += fit_time(grid, log)
        elif section == "convergence":
            rows += convergence(grid, log)
        elif section == "large_table":
            rows += large_table(grid, log)
        elif section == "scoring":
            rows += scoring(grid, rates, user_threads, log)
        elif section == "pyod":
            rows += pyod(grid, log)
        elif section == "default_fit":
            rows += default_fit(grid, user_threads, log)
        else:  # compares torch's default threads in-process with one per worker
            torch.set_num_threads(default_threads)
            rows += distributed(grid, log)
            torch.set_num_threads(args.threads)
    page += f"- duration of the run: {(time.perf_counter() - started) / 60:.0f} min\n"
    results = report.stamped(pd.DataFrame(rows))
    if earlier is not None:  # the kept rows (the matmul rates first) keep their commits
        earlier = report.kept(earlier)
        matmul = earlier["section"] == "matmul"
        kept = earlier[~matmul & ~earlier["section"].isin(args.sections)]
        results = pd.concat([earlier[matmul], results, kept], ignore_index=True)
    page += report.provenance(results, "section")
    if earlier is not None and not args.sections:
        page += (f"\nThis page was rewritten from `{args.name}.csv` without measuring anything: the "
                 "commit of each section's rows is listed above, and the torch threads, load "
                 "and duration above are those of the rewrite.\n")
    elif earlier is not None:
        page += ("\nSections " + ", ".join(sorted(set(kept["section"]))) + " and the matmul "
                 "rates are kept from an earlier run (see the git history of this file for "
                 "its header).\n")
    page += "\n" + _tables(results, rates)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # enough digits that a later --update renders the kept sections unchanged
    results.to_csv(csv_path, index=False, float_format="%.10g")
    (args.out_dir / f"{args.name}.md").write_text(page)
    if (results["section"] == "fit_time").any():  # drawn from the rows, run now or kept
        figure_dir = FIGURE_DIR if args.out_dir == RESULTS_DIR else args.out_dir
        _figure(results, figure_dir / f"{args.name}_fit_time.png")
    return results


if __name__ == "__main__":  # dask worker processes re-import this module
    main()
