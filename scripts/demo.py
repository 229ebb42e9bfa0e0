"""Demo: the package's detectors against IsolationForest on bundled data.

Run with ``bash scripts/demo.sh``, which installs the package first, or
``python scripts/demo.py``. Each detector is trained on half of the normal
rows only (the one-class setting) and evaluated on the other half plus all
anomalies.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
)
from sklearn_flowod.datasets import make_fraud_like


def _one_class_split(X, y, seed):
    """Train on half of the normals; test on the other half and all anomalies."""
    rng = np.random.RandomState(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    half = len(normal) // 2
    test = np.r_[normal[half:], np.flatnonzero(y == 1)]
    return X[normal[:half]], X[test], y[test]


def _datasets(seed):
    cancer = load_breast_cancer()
    # benign (target 1) is normal, malignant is the anomaly
    yield "breast cancer (malignant = anomaly)", cancer.data, (cancer.target == 0).astype(int)
    X, y = make_fraud_like(20_000, random_state=seed)
    yield "synthetic fraud-like table", X, y


def _detectors(seed):
    return {
        "InvertibleOneClassDetector": InvertibleOneClassDetector(random_state=seed),
        "DeepSVDDDetector": DeepSVDDDetector(random_state=seed),
        "FlowDetector": FlowDetector(random_state=seed),
        "ContrastiveFlowDetector": ContrastiveFlowDetector(random_state=seed),
        "IsolationForest": IsolationForest(random_state=seed),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    for name, X, y in _datasets(args.seed):
        X_train, X_test, y_test = _one_class_split(X, y, args.seed)
        print(f"\n{name}: {len(X_train)} training rows, {len(X_test)} test rows, "
              f"{y_test.mean():.1%} anomalies in the test set")
        print(f"{'detector':<30}{'AUROC':>8}{'AP':>8}{'fit s':>8}")
        for label, detector in _detectors(args.seed).items():
            start = time.perf_counter()
            detector.fit(X_train)
            fit_seconds = time.perf_counter() - start
            anomaly = -detector.score_samples(X_test)
            auroc = roc_auc_score(y_test, anomaly)
            ap = average_precision_score(y_test, anomaly)
            print(f"{label:<30}{auroc:>8.3f}{ap:>8.3f}{fit_seconds:>8.1f}")
    print(f"\ndemo: {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
