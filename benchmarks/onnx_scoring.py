"""Scoring exported detectors with onnxruntime, beside the package and IsolationForest.

Usage (from the project root, with the ``onnx`` and ``bench`` extras)::

    python -m benchmarks.onnx_scoring            # 1,000,000 rows, 10,000 single rows
    python -m benchmarks.onnx_scoring --quick    # a smoke test

Every detector with its defaults (trained two epochs: the cost of a row does
not depend on training) and ``IsolationForest(random_state=0)`` are fitted on
10,000 float32 standard normal rows with 30 features and exported with
``skl2onnx.to_onnx``. For each, in one process with the default threads of
torch and of onnxruntime:

* **batch**: rows per second over 1,000,000 new rows, the fastest of two
  passes: the package's ``decision_function`` on the whole array, and the
  onnxruntime session fed batches of :data:`ORT_BATCH` rows (a graph call
  holds a batch x reference-rows matrix);
* **single row**: the median and 99th percentile of the latency of
  10,000 calls with one row each, after 100 warm-up calls;
* a profile of onnxruntime's operators on batches of the flow.

Writes ``benchmarks/results/onnx_scoring.csv`` and ``onnx_scoring.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import skl2onnx
from sklearn.ensemble import IsolationForest

import sklearn_flowod.onnx  # noqa: F401  (registers the converters)

from . import registry, report

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Rows per onnxruntime call in the batch measurement.
ORT_BATCH = 4096
N_FEATURES, TRAIN_ROWS = 30, 10_000
#: The detector whose onnxruntime operators are profiled.
PROFILED = "FlowDetector"
#: IsolationForest's tree ensemble needs the ``ai.onnx.ml`` domain at version 3.
TARGET_OPSET = {"": skl2onnx.get_latest_tested_opset_version(), "ai.onnx.ml": 3}


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _rows_per_s(score, X: np.ndarray, repeats: int = 2) -> float:
    score(X[:1_000])
    best = min(_seconds(score, X) for _ in range(repeats))
    return X.shape[0] / best


def _seconds(score, X) -> float:
    start = time.perf_counter()
    score(X)
    return time.perf_counter() - start


def _latencies(score, X: np.ndarray, calls: int) -> np.ndarray:
    for row in X[:100]:
        score(row[None])
    out = np.empty(calls)
    for i in range(calls):
        row = X[i % X.shape[0]][None]
        start = time.perf_counter()
        score(row)
        out[i] = time.perf_counter() - start
    return out


def _onnx_scorer(model):
    session = _session(model)
    name = session.get_inputs()[0].name

    def score(X):
        return np.concatenate([session.run(["scores"], {name: X[i:i + ORT_BATCH]})[0]
                               for i in range(0, X.shape[0], ORT_BATCH)])

    return score


def operator_shares(model, X: np.ndarray, batches: int = 5) -> pd.Series:
    """Share of onnxruntime's operator time per operator type (its profiler), over
    ``batches`` calls of :data:`ORT_BATCH` rows."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "onnx_scoring")
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i in range(batches):
        session.run(["scores"], {name: X[i * ORT_BATCH:(i + 1) * ORT_BATCH]})
    events = json.loads(Path(session.end_profiling()).read_text())
    durations = pd.Series({}, dtype=float)
    for event in events:
        if event.get("cat") == "Node" and "op_name" in event.get("args", {}):
            op = event["args"]["op_name"]
            durations[op] = durations.get(op, 0.0) + event["dur"]
    return (durations / durations.sum()).sort_values(ascending=False)


def measure(n_rows: int, calls: int, max_epochs: int = 2) -> pd.DataFrame:
    """One row per (model, engine): rows per second and single-row latencies."""
    rng = np.random.RandomState(0)
    X_train = rng.normal(size=(TRAIN_ROWS, N_FEATURES)).astype(np.float32)
    X = rng.normal(size=(n_rows, N_FEATURES)).astype(np.float32)
    models = {name: entry.make(0).set_params(max_epochs=max_epochs)
              for name, entry in registry.package_detectors().items()}
    models["IsolationForest"] = IsolationForest(random_state=0)
    rows, profile = [], None
    for name, model in models.items():
        model.fit(X_train)
        exported = skl2onnx.to_onnx(model, X_train[:1], target_opset=TARGET_OPSET)
        if name == PROFILED:
            profile = operator_shares(exported, X)
        engines = {"onnxruntime": _onnx_scorer(exported)}
        if name != "IsolationForest":  # IsolationForest is the exported peer
            engines["package"] = model.decision_function
        for engine, score in engines.items():
            latency = _latencies(score, X, calls)
            rows.append({"model": name, "engine": engine, "rows": n_rows,
                         "rows_per_s": _rows_per_s(score, X),
                         "latency_median_us": 1e6 * np.median(latency),
                         "latency_p99_us": 1e6 * np.quantile(latency, 0.99),
                         "file_mib": len(exported.SerializeToString()) / 2**20})
    return report.stamped(pd.DataFrame(rows)), profile


def _top(shares: pd.Series, n: int = 6) -> pd.Series:
    """The ``n`` largest shares and the sum of the others."""
    return pd.concat([shares.iloc[:n], pd.Series({"other operators": shares.iloc[n:].sum()})])


def page(results: pd.DataFrame, profile: pd.Series, command: str, calls: int) -> str:
    text = report.header("Scoring exported detectors with onnxruntime", command)
    text += report.provenance(results, "model")
    peer = results[results["model"] == "IsolationForest"].iloc[0]
    table = results.assign(
        **{"over IsolationForest's latency": results["latency_median_us"]
           / peer["latency_median_us"]}).set_index("model")
    shown = table[["engine", "rows_per_s", "latency_median_us", "latency_p99_us",
                   "over IsolationForest's latency", "file_mib"]].copy()
    shown["rows_per_s"] = shown["rows_per_s"].map(lambda v: f"{v:,.0f}")
    lines = [
        "", f"Models fitted on {TRAIN_ROWS:,} float32 standard normal rows with {N_FEATURES} "
        "features (the package's detectors with their defaults, trained two epochs; "
        "`IsolationForest(random_state=0)`), exported by `skl2onnx.to_onnx`. Batch: rows per "
        f"second over {int(results['rows'].iloc[0]):,} rows, the fastest of two passes "
        f"(onnxruntime fed {ORT_BATCH:,} rows per call, the package's `decision_function` "
        f"the whole array). Single row: the latency of {calls:,} calls with one row each "
        "(median and 99th percentile, microseconds). Default threads of torch and "
        "onnxruntime, one process. The file size is the exported model's.", "",
        report.markdown_table(shown, "{:.2f}"),
        f"## Where onnxruntime spends a batch of {PROFILED}", "",
        "The share of onnxruntime's operator time per operator type (its profiler, five "
        f"calls of {ORT_BATCH:,} rows). The neighbour score ranks every reference row by a "
        "float32 `Gemm` and picks the nearest with `TopK` over all of them; the package's "
        "own search ranks them by one product too, but at a higher matmul rate on these "
        "narrow rows, and keeps only the nearest groups of rows for its selection.", "",
        report.markdown_table(_top(profile).rename("share").to_frame()
                              .rename_axis("operator"), "{:.3f}"),
    ]
    return text + "\n".join(lines)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows and 200 calls")
    parser.add_argument("--name", default="onnx_scoring")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    n_rows, calls = (20_000, 200) if args.quick else (1_000_000, 10_000)
    report.this_run()  # the code that runs is the code at the start
    results, profile = measure(n_rows, calls)
    text = page(results, profile, report.command_line("onnx_scoring", argv), calls)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out_dir / f"{args.name}.csv", index=False, float_format="%.6g")
    (args.out_dir / f"{args.name}.md").write_text(text)
    print(results.to_string(index=False))
    return results


if __name__ == "__main__":
    main()
