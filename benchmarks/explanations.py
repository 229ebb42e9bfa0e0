"""Per-feature explanations: are planted causes found, and how fast.

Usage (from the project root)::

    python -m benchmarks.explanations --name explanations

Planted causes: ``sklearn_flowod.datasets.make_planted_anomalies`` (10
correlated Gaussian features, pairwise correlation 0.8; 2,000 normal
training rows; 200 anomalies, each with one changed feature) in its two
kinds: ``correlation`` (the feature breaks the correlation while its own
value stays within 1.5 standard deviations) and ``extreme`` (an extreme
value). For every package detector (defaults, ``explain``) and PyOD's ECOD
(its per-feature tail scores, the ``O`` matrix of its ``explain_outlier``)
a row records the share of anomalies whose top-ranked feature is the
planted one, per kind and seed.

Speed: attributions of 10,000 rows x 30 features (a detector fitted with
its defaults on 10,000 normal rows of the same generator), timed with
torch's default threads, next to ECOD's per-feature scores of the same
rows in the same run (its fit included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import sklearn_flowod
from sklearn_flowod.datasets import make_planted_anomalies

from . import quality, registry, report

KINDS = ("correlation", "extreme")
#: The acceptance bounds: top-ranked cause share of the flow-based detectors,
#: and the time for 10,000 x 30 attributions.
MIN_TOP1 = 0.9
MAX_SECONDS = 30.0
SPEED_SHAPE = (10_000, 30)


def ecod_feature_scores(X_train: np.ndarray, X: np.ndarray) -> np.ndarray:
    """ECOD's per-feature outlier scores of the rows ``X`` (larger = more unusual)."""
    from pyod.models.ecod import ECOD

    ecod = ECOD().fit(X_train)
    ecod.decision_function(X)
    return np.asarray(ecod.O)[-X.shape[0]:]


def planted_rows(names, kind: str, seed: int) -> list[dict]:
    X, anomalies, causes = make_planted_anomalies(2_000, 200, kind=kind, random_state=seed)
    explainers = {name: getattr(sklearn_flowod, name)(random_state=seed) for name in names}
    rows = []
    for name, detector in explainers.items():
        detector.fit(X)
        start = time.perf_counter()
        attributions = detector.explain(anomalies)
        rows.append({"section": "planted", "kind": kind, "seed": seed, "detector": name,
                     "top1": float(np.mean(attributions.argmax(axis=1) == causes)),
                     "explain_s": time.perf_counter() - start})
    start = time.perf_counter()
    ecod = ecod_feature_scores(X, anomalies)
    rows.append({"section": "planted", "kind": kind, "seed": seed, "detector": "PyOD ECOD",
                 "top1": float(np.mean(ecod.argmax(axis=1) == causes)),
                 "explain_s": time.perf_counter() - start})
    return rows


def speed_rows(names) -> list[dict]:
    n_rows, n_features = SPEED_SHAPE
    X, anomalies, _ = make_planted_anomalies(n_rows, n_rows, n_features=n_features,
                                             random_state=0)
    rows = []
    for name in names:
        detector = getattr(sklearn_flowod, name)(random_state=0).fit(X)
        start = time.perf_counter()
        detector.explain(anomalies)
        explain_s = time.perf_counter() - start
        start = time.perf_counter()
        ecod_feature_scores(X, anomalies)
        peer_s = time.perf_counter() - start
        rows.append({"section": "speed", "detector": name, "explain_s": explain_s,
                     "peer_s": peer_s, "n_rows": n_rows, "n_features": n_features})
        print(f"speed  {name:<28}{explain_s:.1f} s  (ECOD {peer_s:.2f} s)", flush=True)
    return rows


def _tables(results: pd.DataFrame) -> str:
    planted = report.mark_dirty(results[results["section"] == "planted"], "detector")
    top1 = planted.pivot_table(index="detector", columns="kind", values="top1") * 100
    top1.columns = [f"{kind}: top feature is the cause (%)" for kind in top1.columns]
    parts = ["## Planted causes, mean over seeds", "", report.markdown_table(top1), ""]
    speed = report.mark_dirty(results[results["section"] == "speed"], "detector")
    if not speed.empty:
        table = speed.set_index("detector")[["explain_s", "peer_s"]].copy()
        table["ratio"] = table["explain_s"] / table["peer_s"]
        table["under 30 s"] = np.where(table["explain_s"] < MAX_SECONDS, "yes", "no")
        table.columns = ["explain (s)", "ECOD per-feature scores (s)", "ratio", "under 30 s"]
        n_rows, n_features = SPEED_SHAPE
        parts += [f"## Attributions of {n_rows:,} rows x {n_features} features", "",
                  report.markdown_table(table, "{:.2f}"), ""]
    return "\n".join(parts)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--detectors", nargs="+", help="package detectors (default: all)")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing section")
    parser.add_argument("--name", required=True, help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.explanations " + " ".join(sys.argv[1:] if argv is None
                                                              else argv)
    header = report.header("Per-feature explanations", command)
    names = args.detectors or list(registry.package_detectors())
    rows = []
    for kind in KINDS:
        for seed in args.seeds:
            rows += planted_rows(names, kind, seed)
            print(f"{kind:<12}seed {seed}  " + " ".join(
                f"{row['detector']} {row['top1']:.2f}" for row in rows[-len(names) - 1:]),
                flush=True)
    if not args.no_speed:
        rows += speed_rows(names)
    results = report.stamped(pd.DataFrame(rows))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out_dir / f"{args.name}.csv", index=False, float_format="%.6g")
    (args.out_dir / f"{args.name}.md").write_text(
        header + report.provenance(results, "detector", marked=True) + "\n" + _tables(results))
    return results


if __name__ == "__main__":
    main()
