"""ADBench data and the project's one-class evaluation protocol.

Per seed s: the normal rows are shuffled with ``np.random.RandomState(s)``;
the first half (at most 10,000 rows) is the training set; the test set is the
second half of the normals plus all anomalies, subsampled to at most 20,000
rows keeping the anomaly fraction; a StandardScaler is fitted on the training
set only.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "adbench"
MAX_TRAIN = 10_000
MAX_TEST = 20_000


@dataclass
class Split:
    """One seed's train/test split of a data set, already standardised."""

    dataset: str
    seed: int
    X_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray  # 1 = anomaly, 0 = normal


def available(data_dir: Path = DEFAULT_DATA_DIR) -> list[str]:
    """Names of the data sets in ``data_dir`` (file names without ``.npz``)."""
    return sorted(p.stem for p in Path(data_dir).glob("*.npz"))


#: A stand-in data set made by the package itself, for runs without the ADBench files.
SYNTHETIC = "synthetic_fraud_like"


def _arrays(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    if name == SYNTHETIC:
        from sklearn_flowod.datasets import make_fraud_like

        X, y = make_fraud_like(4_000, fraud_fraction=0.05, random_state=0)
        return X, y
    with np.load(Path(data_dir) / f"{name}.npz", allow_pickle=False) as data:
        return data["X"].astype(np.float64), data["y"].astype(int)


def load_split(name: str, seed: int, data_dir: Path = DEFAULT_DATA_DIR) -> Split:
    """Apply the protocol to data set ``name`` for ``seed``.

    ``name`` is an ADBench file stem in ``data_dir``, or :data:`SYNTHETIC`
    for 4,000 rows of the package's synthetic fraud-like table.
    """
    X, y = _arrays(name, data_dir)
    rng = np.random.RandomState(seed)
    normal = np.flatnonzero(y == 0)[rng.permutation(int((y == 0).sum()))]
    half = len(normal) // 2
    train = normal[: min(half, MAX_TRAIN)]
    test = np.r_[normal[half:], np.flatnonzero(y == 1)]
    if len(test) > MAX_TEST:
        test_y = y[test]
        keep_anomalies = int(round(MAX_TEST * test_y.mean()))
        anomalies = rng.choice(test[test_y == 1], keep_anomalies, replace=False)
        normals = rng.choice(test[test_y == 0], MAX_TEST - keep_anomalies, replace=False)
        test = np.r_[normals, anomalies]
    scaler = StandardScaler().fit(X[train])
    return Split(name, seed, scaler.transform(X[train]), scaler.transform(X[test]), y[test])


def splits(datasets, seeds, data_dir: Path = DEFAULT_DATA_DIR) -> Iterator[Split]:
    """Every seed's split of every data set (``datasets=None``: all of ``data_dir``),
    data set by data set: the loop of every runner (with the options of
    :func:`add_split_arguments`)."""
    for dataset in datasets or available(data_dir):
        for seed in seeds:
            yield load_split(dataset, seed, data_dir)


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a runner over these splits: ``--datasets``, ``--seeds``, ``--data-dir``."""
    parser.add_argument("--datasets", nargs="+", help="data set names (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
