"""A mixed-type transaction table: amounts, hours, flags, a one-hot category.

Usage (from the project root)::

    python -m benchmarks.mixed_types --name mixed_types

The generator (:func:`make_transactions`) draws card transactions whose
columns depend on each other the way a fraud analyst's do: the merchant
category sets the usual amount (log-normal) and the usual hours; online
purchases are card-not-present; foreign purchases are rarer at home-store
hours. Anomalies (1% by default) come in four equally frequent kinds:

- ``extreme``: an amount 20 to 50 times the category's usual one;
- ``amount for category``: an amount typical of the table, wrong for its
  category (a grocery purchase at an electronics amount);
- ``hour for category``: a typical hour of the table, wrong for its
  category (a bar at breakfast time);
- ``flags``: online and card present at once.

Per seed, 70% of the normal rows train every detector (one-class) and the
rest plus all anomalies are the test set. Every detector sees the same
``ColumnTransformer``: log of the amount and the hour standardised, the
flags as 0/1, the category one-hot (what a newcomer writes). One row per
detector and seed in ``<name>.csv``: AUROC and average precision overall and
per anomaly kind, and the fit time; ``<name>.md`` has the means over seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from . import quality, registry, report

CATEGORIES = ("grocery", "fuel", "restaurant", "bar", "electronics", "travel")
#: Per category: mean log-amount, its spread, the usual hour and its spread.
PROFILE = {
    "grocery": (3.3, 0.5, 17.0, 2.5),
    "fuel": (3.8, 0.3, 12.0, 4.0),
    "restaurant": (3.9, 0.4, 20.0, 1.5),
    "bar": (3.2, 0.5, 23.0, 1.5),
    "electronics": (5.8, 0.6, 15.0, 2.5),
    "travel": (6.3, 0.5, 10.0, 3.0),
}
WEIGHTS = (0.35, 0.2, 0.15, 0.1, 0.1, 0.1)
KINDS = ("extreme", "amount for category", "hour for category", "flags")
NUMERIC = ["amount", "hour"]
FLAGS = ["online", "card_present", "foreign"]


def make_transactions(n_samples: int = 50_000, anomaly_fraction: float = 0.01,
                      random_state: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A transaction table and each row's kind: ``"normal"`` or one of :data:`KINDS`."""
    rng = np.random.default_rng(random_state)
    category = rng.choice(len(CATEGORIES), size=n_samples, p=WEIGHTS)
    mu, sigma, hour_mu, hour_sigma = (np.array([PROFILE[c][k] for c in CATEGORIES])[category]
                                      for k in range(4))
    log_amount = rng.normal(mu, sigma)
    hour = np.mod(rng.normal(hour_mu, hour_sigma), 24.0)
    online_share = np.array([0.05, 0.0, 0.05, 0.0, 0.6, 0.7])[category]
    online = rng.uniform(size=n_samples) < online_share
    card_present = ~online & (rng.uniform(size=n_samples) < 0.95)
    foreign = rng.uniform(size=n_samples) < np.where(category == 5, 0.4, 0.03)
    kind = np.full(n_samples, "normal", dtype=object)
    anomalous = np.flatnonzero(rng.uniform(size=n_samples) < anomaly_fraction)
    kind[anomalous] = rng.choice(KINDS, size=anomalous.size)
    for k in anomalous:
        if kind[k] == "extreme":
            log_amount[k] = mu[k] + np.log(rng.uniform(20, 50))
        elif kind[k] == "amount for category":  # a cheap category at a dear amount
            category[k] = rng.choice([0, 1, 3])
            log_amount[k] = rng.normal(*PROFILE["electronics"][:2])
        elif kind[k] == "hour for category":  # a late-night category in the morning
            category[k] = rng.choice([2, 3])
            hour[k] = rng.normal(8.0, 1.0)
        else:
            online[k], card_present[k] = True, True
    table = pd.DataFrame({"amount": np.exp(log_amount), "hour": hour,
                          "online": online.astype(float),
                          "card_present": card_present.astype(float),
                          "foreign": foreign.astype(float),
                          "category": np.array(CATEGORIES)[category]})
    return table, kind


def preprocessing() -> ColumnTransformer:
    """What a newcomer writes: log amount and hour scaled, flags as they are, one-hot."""
    numeric = make_pipeline(FunctionTransformer(np.log1p, feature_names_out="one-to-one"),
                            StandardScaler())
    return ColumnTransformer([("numeric", numeric, NUMERIC),
                              ("flags", "passthrough", FLAGS),
                              ("category", OneHotEncoder(sparse_output=False), ["category"])])


def split_rows(table: pd.DataFrame, kind: np.ndarray, seed: int):
    """Seed ``seed``'s training and test rows (preprocessed) and the test rows' kinds."""
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(kind == "normal")
    train = rng.choice(normal, size=int(0.7 * normal.size), replace=False)
    test = np.setdiff1d(np.arange(len(kind)), train)
    prep = preprocessing().fit(table.iloc[train])
    return prep.transform(table.iloc[train]), prep.transform(table.iloc[test]), kind[test]


def detector_rows(name: str, entry, table: pd.DataFrame, kind: np.ndarray,
                  seed: int) -> dict:
    X_train, X_test, labels = split_rows(table, kind, seed)
    estimator = entry.make(seed)
    start = time.perf_counter()
    estimator.fit(X_train)
    fit_s = time.perf_counter() - start
    scores = entry.anomaly_score(estimator, X_test)
    row = {"detector": name, "seed": seed, "auroc": roc_auc_score(labels != "normal", scores),
           "ap": average_precision_score(labels != "normal", scores), "fit_s": fit_s}
    for k in KINDS:
        keep = (labels == "normal") | (labels == k)
        row[f"auroc {k}"] = roc_auc_score(labels[keep] == k, scores[keep])
    return row


#: The peers of this table: the ones the package is judged against.
PEERS = ("PyOD KNN", "IsolationForest", "LOF(novelty)", "PyOD ECOD")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=50_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--detectors", nargs="+", help="detector names (default: package + peers)")
    parser.add_argument("--name", required=True, help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.mixed_types " + " ".join(sys.argv[1:] if argv is None
                                                             else argv)
    header = report.header("A mixed-type transaction table", command)
    entries = registry.all_detectors()
    names = args.detectors or [*registry.package_detectors(), *(p for p in PEERS if p in entries)]
    rows = []
    for seed in args.seeds:
        table, kind = make_transactions(args.n_samples, random_state=seed)
        for name in names:
            rows.append(detector_rows(name, entries[name], table, kind, seed))
            print(f"seed {seed}  {name:<28}AUROC {rows[-1]['auroc']:.4f}  "
                  f"fit {rows[-1]['fit_s']:.1f}s", flush=True)
    results = report.stamped(pd.DataFrame(rows))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out_dir / f"{args.name}.csv", index=False, float_format="%.6g")
    marked = report.mark_dirty(results, "detector")
    metrics = ["auroc", "ap", *(f"auroc {k}" for k in KINDS)]
    table = marked.groupby("detector")[metrics].mean() * 100
    table["median fit (s)"] = marked.groupby("detector")["fit_s"].median()
    table = table.sort_values("auroc", ascending=False)
    table.columns = ["AUROC (x100)", "AP (x100)", *(f"AUROC, {k}" for k in KINDS),
                     "median fit (s)"]
    listed = ", ".join(str(s) for s in args.seeds)
    (args.out_dir / f"{args.name}.md").write_text(
        header + report.provenance(results, "detector", marked=True)
        + f"\n{args.n_samples:,} transactions per seed (seeds {listed}); means over seeds.\n\n"
        + report.markdown_table(table, "{:.2f}"))
    return results


if __name__ == "__main__":
    main()
