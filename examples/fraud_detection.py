"""Fraud detection on a synthetic card-transaction table.

The table comes from :func:`sklearn_flowod.datasets.make_fraud_like`: it
imitates the layout of public card-fraud data (anonymised components, an
amount, the hour, two flags) with about 1% frauds, and is entirely
synthetic, so its results say nothing about real fraud.

The script

1. splits the table into training, validation and test rows;
2. fits each detector on the *normal* training rows only, in a pipeline
   that replaces the amount by its logarithm;
3. compares AUROC and average precision on the test rows with
   scikit-learn's IsolationForest;
4. picks a threshold from an alert budget: flag 1% of the normal
   validation rows, and reports precision and recall of ``predict`` on the
   test rows at that threshold;
5. saves the best pipeline with joblib.

Run ``python examples/fraud_detection.py``; ``--quick`` uses a small table
and tiny networks (a smoke test of the code, not a meaningful result).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_flowod import ContrastiveFlowDetector, FlowDetector, InvertibleOneClassDetector
from sklearn_flowod.datasets import make_fraud_like

AMOUNT = 10  # column of the amount in make_fraud_like's default layout
ALERT_BUDGET = 0.01  # share of normal transactions we accept to flag


def log_amount(X: np.ndarray) -> np.ndarray:
    """Replace the (log-normal) amount column by its logarithm."""
    X = np.array(X, dtype=np.float64)
    X[:, AMOUNT] = np.log(X[:, AMOUNT])
    return X


def candidates(quick: bool) -> dict[str, Pipeline]:
    """The detectors to compare, each behind the same preprocessing."""
    budget = {"n_blocks": 2, "hidden_size": 16, "max_epochs": 2} if quick else {}
    detectors = {
        "IsolationForest": IsolationForest(random_state=0),
        "FlowDetector": FlowDetector(**budget, random_state=0),
        "ContrastiveFlowDetector": ContrastiveFlowDetector(**budget, random_state=0),
        "InvertibleOneClassDetector": InvertibleOneClassDetector(**budget, random_state=0),
    }
    return {name: make_pipeline(FunctionTransformer(log_amount), det)
            for name, det in detectors.items()}


def main(quick: bool = False, out_dir: Path | None = None) -> dict[str, dict[str, float]]:
    """Fit, compare and threshold the detectors; return the test metrics per detector.

    Parameters
    ----------
    quick : bool
        Small table and tiny networks, for a smoke test.
    out_dir : Path or None
        Where to save the best pipeline (``fraud_detector.joblib``); with
        None the save-and-load round trip runs in a temporary folder.
    """
    X, y = make_fraud_like(2_000 if quick else 20_000, random_state=0)  # y == 1: fraud
    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    X_val, X_test, y_val, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0
    )
    X_val_normal = X_val[y_val == 0]

    results: dict[str, dict[str, float]] = {}
    fitted = {}
    for name, model in candidates(quick).items():
        model.fit(X_train[y_train == 0])  # normal rows only
        anomaly = -model.score_samples(X_test)  # higher = more anomalous
        # the alert budget: flag that share of the normal validation rows
        model[-1].offset_ = np.quantile(model.score_samples(X_val_normal), ALERT_BUDGET)
        flagged = model.predict(X_test) == -1
        results[name] = {
            "AUROC": roc_auc_score(y_test, anomaly),
            "AP": average_precision_score(y_test, anomaly),
            "precision": precision_score(y_test, flagged, zero_division=0.0),
            "recall": recall_score(y_test, flagged),
        }
        fitted[name] = model

    print(f"{'detector':<28}{'AUROC':>8}{'AP':>8}{'precision':>11}{'recall':>8}")
    for name, row in results.items():
        print(f"{name:<28}" + "".join(f"{row[k]:>{w}.3f}" for k, w in
                                      [("AUROC", 8), ("AP", 8), ("precision", 11),
                                       ("recall", 8)]))

    best = max(results, key=lambda name: results[name]["AP"])
    print(f"best by average precision: {best}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if out_dir is None else out_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "fraud_detector.joblib"
        joblib.dump(fitted[best], path)  # the threshold (offset_) is saved with it
        restored = joblib.load(path)
        assert np.array_equal(restored.predict(X_test), fitted[best].predict(X_test))
    print("saved and reloaded with joblib" + ("" if out_dir is None else f": {path}"))
    return results


def cli(argv: list[str] | None = None) -> None:
    """Command-line entry: ``--quick`` for tiny budgets, ``--out-dir`` for the model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to save the best pipeline (default: nowhere)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small networks train fastest on one thread
    main(quick=args.quick, out_dir=args.out_dir)


if __name__ == "__main__":
    cli()
