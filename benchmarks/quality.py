"""Detection quality of the package's detectors and their peers on ADBench.

Usage (from the project root)::

    python -m benchmarks.quality                      # everything, 3 seeds
    python -m benchmarks.quality --quick              # 4 data sets, 1 seed (without
                                                      # the ADBench files: synthetic data)
    python -m benchmarks.quality --datasets 6_cardio --detectors IsolationForest
    python -m benchmarks.quality --detectors LikelihoodRatioDetector --include flows

Writes ``benchmarks/results/<name>.csv`` (one row per data set, detector and
seed, with the ``commit`` it was made at and ``dirty``: whether the working
tree had uncommitted changes; rows added by ``--include`` keep their own) and
``<name>.md`` (the tables, headed by the commits of their rows). The protocol
is in ``adbench.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from . import adbench, registry, report

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUICK_DATASETS = ["38_thyroid", "6_cardio", "40_vowels", "29_Pima"]


def _inlier_rate(estimator, X_normal) -> float:
    """Fraction of normal test rows that the default threshold calls inliers."""
    if not hasattr(estimator, "offset_") or not hasattr(estimator, "predict"):
        return np.nan
    return float(np.mean(estimator.predict(X_normal) == 1))


def evaluate(entry: registry.Entry, split: adbench.Split) -> dict:
    estimator = entry.make(split.seed)
    start = time.perf_counter()
    estimator.fit(split.X_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = entry.anomaly_score(estimator, split.X_test)
    score_s = time.perf_counter() - start
    return {
        "dataset": split.dataset,
        "detector": None,
        "seed": split.seed,
        "auroc": roc_auc_score(split.y_test, scores),
        "ap": average_precision_score(split.y_test, scores),
        "inlier_rate": _inlier_rate(estimator, split.X_test[split.y_test == 0]),
        "fit_s": fit_s,
        "score_s": score_s,
    }


def evaluate_all(entries: dict[str, registry.Entry], splits) -> list[dict]:
    """:func:`evaluate` of every entry on every split, one progress line each."""
    width = max(38, *(len(name) + 1 for name in entries))
    rows = []
    for split in splits:
        for name, entry in entries.items():
            rows.append({**evaluate(entry, split), "detector": name})
            print(f"{split.dataset:<24}{name:<{width}}seed {split.seed}  AUROC "
                  f"{rows[-1]['auroc']:.3f}  fit {rows[-1]['fit_s']:.1f}s", flush=True)
    return rows


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", help="data set names (default: all)")
    parser.add_argument("--detectors", nargs="+", help="detector names (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=adbench.DEFAULT_DATA_DIR)
    parser.add_argument("--quick", action="store_true", help="4 data sets, 1 seed")
    parser.add_argument("--name", default="quality", help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--from-csv", action="store_true",
        help="run nothing: rebuild <name>.md from the rows already in <name>.csv, or, with "
        "--include, write <name>.csv and <name>.md from the included files' rows (those of "
        "--datasets and --detectors, where given)",
    )
    parser.add_argument(
        "--include", nargs="+", default=[], metavar="NAME",
        help="add the rows of earlier result files <NAME>.csv (same data sets and seeds, "
        "other detectors) to this run's files, instead of running those detectors again",
    )
    args = parser.parse_args(argv)
    command = "python -m benchmarks.quality " + " ".join(sys.argv[1:] if argv is None else argv)
    # The header names the code that runs now, before anything else can change.
    header = report.header("Detection quality on ADBench", command.strip())
    if args.from_csv:
        sources = args.include or [args.name]
        results = pd.concat([report.kept(pd.read_csv(args.out_dir / f"{name}.csv"))
                             for name in sources])
        results = results.drop_duplicates(["dataset", "detector", "seed"])
        # --datasets and --detectors pick rows of those files (a page on some detectors)
        for column, chosen in (("dataset", args.datasets), ("detector", args.detectors)):
            if chosen:
                results = results[results[column].isin(chosen)]
        if args.include:
            results.to_csv(args.out_dir / f"{args.name}.csv", index=False, float_format="%.6g")
        _write_tables(results, args.out_dir / f"{args.name}.md", header)
        return results

    datasets = args.datasets or adbench.available(args.data_dir)
    seeds = args.seeds
    if args.quick:
        datasets, seeds = args.datasets or QUICK_DATASETS, [0]
        if not set(datasets) <= set(adbench.available(args.data_dir)):
            print("ADBench files not found (give their folder with --data-dir): the quick "
                  "run uses the synthetic fraud-like table instead.", flush=True)
            datasets = [adbench.SYNTHETIC]
    detectors = registry.all_detectors()
    if args.detectors:
        known = registry.named_detectors()
        unknown = set(args.detectors) - set(known)
        if unknown:
            parser.error(f"unknown detectors {sorted(unknown)}; known: {sorted(known)}")
        detectors = {name: known[name] for name in args.detectors}

    results = report.stamped(pd.DataFrame(evaluate_all(
        detectors, adbench.splits(datasets, seeds, args.data_dir))))
    if args.include:
        results = pd.concat([results, *_included(args, datasets, seeds, detectors)])
        # a file that itself included another one repeats its rows: keep the first
        results = results.drop_duplicates(["dataset", "detector", "seed"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out_dir / f"{args.name}.csv", index=False, float_format="%.6g")
    _write_tables(results, args.out_dir / f"{args.name}.md", header)
    return results


def _included(args, datasets, seeds, detectors) -> list[pd.DataFrame]:
    """Rows of earlier runs on the same splits, for detectors not run now."""
    frames = []
    for name in args.include:
        rows = report.kept(pd.read_csv(args.out_dir / f"{name}.csv"))
        rows = rows[rows["dataset"].isin(datasets) & rows["seed"].isin(seeds)
                    & ~rows["detector"].isin(detectors)]
        frames.append(rows)
    return frames


def _write_tables(results: pd.DataFrame, path: Path, header: str) -> None:
    seeds = ", ".join(str(s) for s in sorted(results["seed"].unique()))
    text = header + report.provenance(results, "detector", marked=True) + (
        f"\nProtocol: `benchmarks/adbench.py` (one-class, seeds {seeds}, StandardScaler on "
        "train).\n\n"
    )
    path.write_text(text + report.quality_tables(results))


if __name__ == "__main__":
    main()
