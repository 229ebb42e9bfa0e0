"""A flow's score beside nearest-neighbour distances, in the input and in its latent space.

Usage (from the project root)::

    python -m benchmarks.latent_neighbours ContrastiveFlowDetector --name latent_neighbours_cf
    python -m benchmarks.latent_neighbours FlowDetector --mixed-types 50000 --name ...

(the second on the transaction table of ``mixed_types.py`` and its split instead).

On every split of ``adbench.py`` the detector is fitted once with its
defaults but ``n_neighbors=None`` (the paper's score, the package default
before this study made the sum below the default); its test rows are then
scored six ways, all label-free:

- ``score``: the detector's own anomaly score with ``n_neighbors=None``;
- ``kNN, input``: the distance to the k-th nearest training row in the
  standardised input space (PyOD's kNN, k = 5);
- ``kNN, latent``: the same distance between the network's codes
  ``INN(x)``, where the training rows are mapped to (nearly) a standard normal;
- the sums ``score + kNN, input``, ``score + kNN, latent`` and
  ``score + kNN, input + kNN, latent`` of those scores, each standardised by
  the median and interquartile range of its values on the training rows (the
  distances leave the row itself out).

One row per data set, seed and score in ``benchmarks/results/<name>.csv``
(AUROC, average precision, the fit time and the time of the neighbour search);
``<name>.md`` summarises the mean AUROC, the average rank among the six scores
and, each score put in the detector's place, the average rank among all columns
of ``quality.md`` on the same splits, with PyOD kNN's rank beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

import sklearn_flowod
from sklearn_flowod.neighbours import ExactNeighbours, robust_scale

from . import adbench, mixed_types, quality, report

#: The neighbour whose distance is the score (PyOD's kNN default).
N_NEIGHBORS = 5
KNN_PEER = "PyOD KNN"


def _codes(module, batch):
    return module(batch, jac=False)[0]


def kth_distances(reference: np.ndarray, X: np.ndarray, leave_out: bool = False) -> np.ndarray:
    """Distance of every row of ``X`` to its k-th nearest row of ``reference``
    (the package's search)."""
    search = ExactNeighbours(torch.as_tensor(reference, dtype=torch.float64))
    return search.kth_distance(torch.as_tensor(X, dtype=torch.float64), N_NEIGHBORS,
                               leave_out).numpy()


def _standardised(test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``test`` centred and scaled as the package's score standardises a part on ``train``."""
    center, scale = robust_scale(torch.as_tensor(train, dtype=torch.float64)[:, None])
    return (test - center.item()) / scale.item()


def score_rows(name: str, split: adbench.Split) -> list[dict]:
    """One row per way of scoring ``split``'s test rows with one fitted detector."""
    detector = getattr(sklearn_flowod, name)(random_state=split.seed, n_neighbors=None)
    start = time.perf_counter()
    detector.fit(split.X_train)
    fit_s = time.perf_counter() - start
    parts = {"score": (detector.anomaly_score(split.X_test),
                       detector.anomaly_score(split.X_train))}
    start = time.perf_counter()
    for space, (train, test) in {
        "input": (split.X_train, split.X_test),
        "latent": (detector._apply_in_batches(split.X_train, _codes),
                   detector._apply_in_batches(split.X_test, _codes)),
    }.items():
        parts[f"kNN, {space}"] = (kth_distances(train, test),
                                  kth_distances(train, train, leave_out=True))
    knn_s = time.perf_counter() - start
    scores = {key: test for key, (test, _) in parts.items()}
    for combo in (("score", "kNN, input"), ("score", "kNN, latent"),
                  ("score", "kNN, input", "kNN, latent")):
        scores[" + ".join(combo)] = sum(_standardised(*parts[key]) for key in combo)
    return [{"dataset": split.dataset, "detector": f"{name}: {key}", "seed": split.seed,
             "auroc": roc_auc_score(split.y_test, value),
             "ap": average_precision_score(split.y_test, value), "inlier_rate": np.nan,
             "fit_s": fit_s, "knn_s": knn_s} for key, value in scores.items()]


def _quality_columns(quality_csv: Path, results: pd.DataFrame, datasets: pd.Index,
                     name: str) -> pd.DataFrame | None:
    """The other columns of ``quality.csv`` on the same data sets and seeds, or None
    where it does not cover them all."""
    if not quality_csv.exists():
        return None
    peers = pd.read_csv(quality_csv)
    peers = peers[peers.seed.isin(results.seed.unique())]
    columns = peers.pivot_table(index="dataset", columns="detector", values="auroc") * 100
    columns = columns.reindex(datasets).drop(columns=[name])
    return columns if columns.notna().all(axis=None) else None


def _summary(results: pd.DataFrame, name: str, quality_csv: Path) -> str:
    table = results.pivot_table(index="dataset", columns="detector", values="auroc") * 100
    summary = report.auroc_summary(results).rename(
        columns={"average rank": "average rank among these scores"})
    columns = _quality_columns(quality_csv, results, table.index, name)
    if columns is not None:
        ranks, knn = {}, {}
        for score in table.columns:
            ranked = columns.assign(candidate=table[score]).rank(axis=1, ascending=False).mean()
            ranks[score], knn[score] = ranked["candidate"], ranked.get(KNN_PEER, np.nan)
        summary[f"average rank in place of {name} in quality.md"] = pd.Series(ranks)
        summary[f"{KNN_PEER}'s rank there"] = pd.Series(knn)
    summary.index.name = "score"
    timing = (f"Median fit {results.fit_s.median():.2f} s; median time of both neighbour "
              f"searches (codes included) {results.knn_s.median():.2f} s per split.\n\n")
    return "## Summary\n\n" + report.markdown_table(summary, "{:.2f}") + "\n\n" + timing


def _splits(args):
    """The ADBench splits of ``args``, or those of the mixed-type table (anomaly = 1)."""
    if args.mixed_types:
        for seed in args.seeds:
            table, kind = mixed_types.make_transactions(args.mixed_types, random_state=seed)
            X_train, X_test, labels = mixed_types.split_rows(table, kind, seed)
            yield adbench.Split("mixed_types", seed, X_train, X_test,
                                (labels != "normal").astype(int))
        return
    yield from adbench.splits(args.datasets, args.seeds, args.data_dir)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector", help="an INN-based detector class of sklearn_flowod")
    adbench.add_split_arguments(parser)
    parser.add_argument("--mixed-types", type=int, metavar="N_SAMPLES",
                        help="instead of ADBench: the transaction table of mixed_types.py")
    parser.add_argument("--name", required=True, help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    args = parser.parse_args(argv)
    command = report.command_line("latent_neighbours", argv)
    header = report.header(f"{args.detector} beside nearest-neighbour distances", command)
    rows = []
    for split in _splits(args):
        rows += score_rows(args.detector, split)
        print(f"{split.dataset:<24}seed {split.seed}  "
              + " ".join(f"{row['auroc']:.3f}" for row in rows[-6:]), flush=True)
    results = report.stamped(pd.DataFrame(rows))
    report.write_study(results, args.out_dir, args.name, header, args.seeds,
                       _summary(results, args.detector, quality.RESULTS_DIR / "quality.csv"))
    return results


if __name__ == "__main__":
    main()
