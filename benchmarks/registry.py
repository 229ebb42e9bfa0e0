"""The detectors a benchmark can run: the package's own and the peers.

Every package detector exported by ``sklearn_flowod`` is picked up without
edits here. Peers are scikit-learn's IsolationForest, OneClassSVM and
LocalOutlierFactor(novelty=True), and PyOD's detectors when PyOD is
installed (``pip install sklearn-flowod[bench]``). Each entry makes a fresh,
seeded estimator and says how to get an anomaly score (higher = more
anomalous) from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

import sklearn_flowod
from sklearn_flowod.base import BaseDeepDetector


@dataclass
class Entry:
    """How to build one detector and read its anomaly score."""

    make: Callable[[int], object]
    anomaly_score: Callable[[object, np.ndarray], np.ndarray]
    family: str  # "package", "sklearn" or "pyod"


def negated_score_samples(estimator, X):
    return -estimator.score_samples(X)


def _pyod_score(estimator, X):
    return estimator.decision_function(X)


def package_detectors() -> dict[str, Entry]:
    entries = {}
    for name in sklearn_flowod.__all__:
        obj = getattr(sklearn_flowod, name)
        if inspect.isclass(obj) and issubclass(obj, BaseDeepDetector):
            entries[name] = Entry(
                lambda seed, cls=obj: cls(random_state=seed),
                negated_score_samples,
                "package",
            )
    return entries


def package_variants() -> dict[str, Entry]:
    """Non-default configurations that a benchmark question needs by name."""
    return {
        # the likelihood ratio against the product of the marginals instead of
        # its default broad box: the documented failure mode
        "LikelihoodRatioDetector(FeaturePermutation)": Entry(
            lambda seed: sklearn_flowod.LikelihoodRatioDetector(
                auxiliary=sklearn_flowod.FeaturePermutation(), random_state=seed
            ),
            negated_score_samples,
            "package",
        ),
    }


def sklearn_peers() -> dict[str, Entry]:
    return {
        "IsolationForest": Entry(
            lambda seed: IsolationForest(random_state=seed), negated_score_samples, "sklearn"
        ),
        "OneClassSVM": Entry(lambda seed: OneClassSVM(), negated_score_samples, "sklearn"),
        "LOF(novelty)": Entry(
            lambda seed: LocalOutlierFactor(novelty=True), negated_score_samples, "sklearn"
        ),
    }


def pyod_peers() -> dict[str, Entry]:
    """PyOD's detectors, or none when PyOD is not installed.

    A broken PyOD installation (e.g. one of its own dependencies missing) is an
    error, not a silently shorter benchmark.
    """
    try:
        import pyod  # noqa: F401
    except ImportError:
        return {}
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.deep_svdd import DeepSVDD
    from pyod.models.ecod import ECOD
    from pyod.models.kde import KDE
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF

    def seeded(cls, **kwargs):
        return lambda seed: cls(random_state=seed, **kwargs)

    return {
        "PyOD KNN": Entry(lambda seed: KNN(), _pyod_score, "pyod"),
        "PyOD LOF": Entry(lambda seed: LOF(), _pyod_score, "pyod"),
        "PyOD KDE": Entry(lambda seed: KDE(), _pyod_score, "pyod"),
        "PyOD ECOD": Entry(lambda seed: ECOD(), _pyod_score, "pyod"),
        "PyOD DeepSVDD": Entry(lambda seed: _deep_svdd(DeepSVDD, seed), _pyod_score, "pyod"),
        "PyOD AutoEncoder": Entry(seeded(AutoEncoder, verbose=0), _pyod_score, "pyod"),
    }


def _deep_svdd(cls, seed):
    # PyOD's DeepSVDD needs the feature count up front; it is set in fit by a
    # small adapter so that every entry is made the same way; 100 epochs is its
    # default, the peer as its users get it.
    return _LazyFeatures(cls, seed, epochs=100)


class _LazyFeatures:
    """Build a PyOD estimator that needs ``n_features`` at fit time."""

    def __init__(self, cls, seed, **kwargs):
        self.cls, self.seed, self.kwargs, self.model = cls, seed, kwargs, None

    def fit(self, X):
        self.model = self.cls(
            n_features=X.shape[1], random_state=self.seed, verbose=0, **self.kwargs
        )
        self.model.fit(X)
        return self

    def decision_function(self, X):
        return self.model.decision_function(X)


def all_detectors() -> dict[str, Entry]:
    """Every runnable detector; the variants run only when asked for by name."""
    return {**package_detectors(), **sklearn_peers(), **pyod_peers()}


def named_detectors() -> dict[str, Entry]:
    """What ``--detectors`` may name: all detectors and the package variants."""
    return {**all_detectors(), **package_variants()}
