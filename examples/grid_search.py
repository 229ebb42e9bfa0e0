"""Tuning a detector with GridSearchCV on the synthetic fraud-like table.

A detector is fitted on X alone, but a search needs labels to compare its
candidates. Give them in the convention of ``predict``: ``y = +1`` for
normal rows and ``y = -1`` for outliers. Then ``scoring="roc_auc"`` ranks
the rows by the detector's ``decision_function`` (higher = more normal)
and measures how well that separates the two labels.

Use ``StratifiedKFold``: an integer ``cv`` means plain ``KFold`` here, whose
folds may hold no outlier at all (and then score NaN). The training folds
contain the outliers of their rows, as an unlabelled table would: the
detectors tolerate a small contamination.

The table is synthetic (:func:`sklearn_flowod.datasets.make_fraud_like`).
Run ``python examples/grid_search.py``; ``--quick`` uses a small table and
tiny networks (a smoke test of the code, not a meaningful result).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_flowod import InvertibleOneClassDetector
from sklearn_flowod.datasets import make_fraud_like

AMOUNT = 10  # column of the amount in make_fraud_like's default layout


def log_amount(X: np.ndarray) -> np.ndarray:
    """Replace the (log-normal) amount column by its logarithm."""
    X = np.array(X, dtype=np.float64)
    X[:, AMOUNT] = np.log(X[:, AMOUNT])
    return X


def main(quick: bool = False, out_dir: Path | None = None) -> GridSearchCV:
    """Run the search and report the best candidate on held-out rows.

    Parameters
    ----------
    quick : bool
        Small table and tiny networks, for a smoke test.
    out_dir : Path or None
        Where to write the search's results (``grid_search.csv``); None
        writes nothing.
    """
    X, fraud = make_fraud_like(1_000 if quick else 8_000, random_state=0)
    y = np.where(fraud == 1, -1, 1)  # +1 normal, -1 outlier: the convention of predict
    X_search, X_test, y_search, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )

    if quick:
        detector = InvertibleOneClassDetector(hidden_size=16, max_epochs=2, random_state=0)
        grid = {"invertibleoneclassdetector__n_blocks": [1, 2]}
    else:
        detector = InvertibleOneClassDetector(random_state=0)
        grid = {
            "invertibleoneclassdetector__n_blocks": [4, 8],
            "invertibleoneclassdetector__learning_rate": [1e-3, 3e-3],
        }
    search = GridSearchCV(
        make_pipeline(FunctionTransformer(log_amount), detector),
        grid,
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
    )
    search.fit(X_search, y_search)

    for params, mean, std in zip(search.cv_results_["params"],
                                 search.cv_results_["mean_test_score"],
                                 search.cv_results_["std_test_score"], strict=True):
        print(f"AUROC {mean:.3f} +- {std:.3f}  {params}")
    test_auroc = roc_auc_score(y_test, search.score_samples(X_test))
    print(f"best: {search.best_params_}; held-out AUROC {test_auroc:.3f}")

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        keys = ["params", "mean_test_score", "std_test_score", "rank_test_score"]
        with open(out_dir / "grid_search.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(keys)
            writer.writerows(zip(*(search.cv_results_[k] for k in keys), strict=True))
    return search


def cli(argv: list[str] | None = None) -> None:
    """Command-line entry: ``--quick`` for tiny budgets, ``--out-dir`` for the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to write grid_search.csv (default: nowhere)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small networks train fastest on one thread
    main(quick=args.quick, out_dir=args.out_dir)


if __name__ == "__main__":
    cli()
