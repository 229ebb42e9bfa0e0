"""Seed ensembles of a package detector on the ADBench dev sets.

Usage (from the project root)::

    python -m benchmarks.ensemble FlowDetector --members 3 --name ensemble_flow

On every split of ``adbench.py`` the detector is fitted ``--members`` times
with its defaults, member ``m`` with ``random_state = seed + 1000 * m``
(member 0 is the single detector of ``quality.py``); an ensemble of the first
``k`` members scores a row by the mean of their anomaly scores (for the flows
a mean log-density: the log of the members' geometric mean density). One
row per data set, seed and ``k`` in ``benchmarks/results/<name>.csv``: its
AUROC, average precision and the fit time of its ``k`` members; ``<name>.md``
summarises mean AUROC, average rank among the ensemble sizes, seed spread
and median fit time per ``k``. Label-free: the members differ only in their
seeds, and nothing is tuned on the test labels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

import sklearn_flowod

from . import adbench, quality, report

#: The seed offset between two members of one ensemble.
MEMBER_SEED_STEP = 1000


def member_scores(cls, split: adbench.Split, n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly scores of every member on the test rows, and every member's fit time."""
    scores, fit_s = [], []
    for member in range(n_members):
        detector = cls(random_state=split.seed + MEMBER_SEED_STEP * member)
        start = time.perf_counter()
        detector.fit(split.X_train)
        fit_s.append(time.perf_counter() - start)
        scores.append(detector.anomaly_score(split.X_test))
    return np.array(scores), np.array(fit_s)


def ensemble_rows(name: str, split: adbench.Split, n_members: int) -> list[dict]:
    """One row per ensemble size ``k`` = 1 .. ``n_members`` on ``split``."""
    scores, fit_s = member_scores(getattr(sklearn_flowod, name), split, n_members)
    rows = []
    for k in range(1, n_members + 1):
        combined = scores[:k].mean(axis=0)
        rows.append({"dataset": split.dataset, "detector": f"{name}, {k} member(s)",
                     "members": k, "seed": split.seed,
                     "auroc": roc_auc_score(split.y_test, combined),
                     "ap": average_precision_score(split.y_test, combined),
                     "inlier_rate": np.nan, "fit_s": float(fit_s[:k].sum())})
    return rows


def _summary(results: pd.DataFrame) -> str:
    summary = report.auroc_summary(results, spread=True, median_fit=True)
    summary.index.name = "ensemble"
    return "## Summary\n\n" + report.markdown_table(summary, "{:.2f}") + "\n"


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector", help="a detector class of sklearn_flowod")
    parser.add_argument("--members", type=int, default=3, help="the largest ensemble")
    adbench.add_split_arguments(parser)
    parser.add_argument("--name", required=True, help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.ensemble " + " ".join(sys.argv[1:] if argv is None else argv)
    header = report.header(f"Seed ensembles of {args.detector}", command)
    rows = []
    for split in adbench.splits(args.datasets, args.seeds, args.data_dir):
        rows += ensemble_rows(args.detector, split, args.members)
        print(f"{split.dataset:<24}seed {split.seed}  AUROC by size "
              + " ".join(f"{row['auroc']:.3f}" for row in rows[-args.members:]), flush=True)
    results = report.stamped(pd.DataFrame(rows))
    report.write_study(results, args.out_dir, args.name, header, args.seeds,
                       _summary(results))
    return results


if __name__ == "__main__":
    main()
