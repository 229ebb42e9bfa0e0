"""Every detector with its defaults, used as a scikit-learn user would."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.ablation import contaminated_search
from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)

DETECTORS = [ContrastiveFlowDetector, DeepSVDDDetector, FlowDetector,
             InvertibleOneClassDetector, LikelihoodRatioDetector]


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda cls: cls.__name__)
def test_defaults_pass_a_grid_search_over_contaminated_folds(detector):
    # 400 standard normal rows in 4-D and 40 rows around 5 in every coordinate;
    # the folds are fitted with their outliers, scored by roc_auc on +1/-1 labels
    assert contaminated_search(detector(device="cpu")) > 0.9


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda cls: cls.__name__)
def test_a_timestamp_like_column_changes_neither_threshold_nor_ranking(detector):
    # the anomalies differ from the normal rows only in a time column spread over
    # days (in seconds); adding a Unix-epoch offset must not change what is found
    rng = np.random.default_rng(1)
    day = 86_400.0

    def rows(n, shift):
        return np.column_stack([rng.standard_normal((n, 3)),
                                day * (3.0 * rng.standard_normal(n) + shift)])

    X_train, X_normal, X_anomalous = rows(600, 0.0), rows(400, 0.0), rows(40, 15.0)
    X_test = np.vstack([X_normal, X_anomalous])
    y_test = np.r_[np.zeros(400), np.ones(40)]
    offset = np.array([0.0, 0.0, 0.0, 1.7e9])
    flagged, auroc = [], []
    for shift in (0.0, offset):
        fitted = detector(device="cpu", random_state=0).fit(X_train + shift)
        flagged.append(np.mean(fitted.predict(X_normal + shift) == -1))
        auroc.append(roc_auc_score(y_test, -fitted.score_samples(X_test + shift)))
    assert flagged[1] <= 2 * flagged[0] + 1 / len(X_normal)
    assert abs(auroc[1] - auroc[0]) <= 0.01
