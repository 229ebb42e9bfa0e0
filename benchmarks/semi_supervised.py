"""Known anomalies: detectors given a few labelled anomalies, against peers with and without labels.

Usage (from the project root)::

    python -m benchmarks.semi_supervised                      # every dev set, seeds 0-2
    python -m benchmarks.semi_supervised --datasets 6_cardio --seeds 0 --out-dir /tmp/semi

Protocol, on top of the one-class split of ``adbench.py`` (per data set and
seed): the test set's anomalies are the pool the labelled rows come from.

* Budgets: ``5`` labelled anomalies, and ``5%`` of the pool (at least 5).
* *seen*: the labelled rows are drawn at random from the pool; AUROC on the
  rest of the pool against the test normals.
* *novel*: the pool is split in two by ``KMeans(2, random_state=seed)`` on the
  standardised rows; the labelled rows are drawn from the larger part (the
  pattern already known) and AUROC is on the other part (the pattern nobody
  has labelled) against the test normals.

The labelled rows leave the test set and join the training normals with
``y = -1``. The package's detectors run with ``known_anomaly_weight=1.0``
(``"<name>(labels)"``) and with their defaults (labels unused, one fit per
split); the peers are PyOD ``KNN`` and ``IsolationForest`` (labels unused),
scikit-learn's ``HistGradientBoostingClassifier(class_weight="balanced")``,
PyOD ``XGBOD`` and the kNN ratio ``d_k / (d_k + d_a)`` (``d_k`` the distance to
the 5th nearest training normal, ``d_a`` to the nearest labelled anomaly).
DeepOD's ``DeepSAD`` and ``DevNet`` are not run: DeepOD requires
``torch<1.13.1``, which pip cannot install beside the pinned torch.

Writes ``semi_supervised.csv`` (one row per data set, seed, budget, condition
and method) and ``semi_supervised.md``, which ends with one line per budget and
condition: ``semi-supervised summary: <budget> <condition>: best package
<name> <mean>; best peer <name> <mean>``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

import sklearn_flowod

from . import adbench, registry, report
from .quality import RESULTS_DIR

BUDGETS = ("5", "5%")
CONDITIONS = ("seen", "novel")
#: The labelled methods' suffix.
LABELS = "(labels)"


def labelled_rows(split: adbench.Split, budget: str,
                  condition: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into the test set) of the labelled anomalies and of the anomalies scored."""
    rng = np.random.RandomState(split.seed)
    pool = np.flatnonzero(split.y_test == 1)
    n_labelled = 5 if budget == "5" else max(5, int(round(0.05 * pool.size)))
    if condition == "seen":
        labelled = rng.choice(pool, min(n_labelled, pool.size - 1), replace=False)
        return labelled, np.setdiff1d(pool, labelled)
    parts = KMeans(2, random_state=split.seed, n_init=10).fit_predict(split.X_test[pool])
    known = np.argmax(np.bincount(parts, minlength=2))
    source = pool[parts == known]
    return rng.choice(source, min(n_labelled, source.size), replace=False), pool[parts != known]


def _knn_ratio(normal: NearestNeighbors, known: NearestNeighbors, X_test) -> np.ndarray:
    """``d_k / (d_k + d_a)`` from the fitted searches of the normal and labelled rows."""
    d_k = normal.kneighbors(X_test)[0][:, -1]
    d_a = known.kneighbors(X_test, n_neighbors=1)[0][:, 0]
    return d_k / np.maximum(d_k + d_a, np.finfo(float).tiny)


def _labelled_methods(seed: int) -> dict:
    """``fit(X, y) -> score`` per method that reads labels (y: 1 anomaly), where
    ``score(X_test)`` gives the anomaly scores: the fit alone is timed."""
    from pyod.models.xgbod import XGBOD

    def package(cls):
        def fit(X, y):
            det = cls(random_state=seed, known_anomaly_weight=1.0).fit(X, np.where(y == 1, -1, 1))
            return lambda X_test: -det.score_samples(X_test)
        return fit

    def classifier(make):
        def fit(X, y):
            model = make().fit(X, y)
            return lambda X_test: model.predict_proba(X_test)[:, 1]
        return fit

    def xgbod(X, y):  # its decision_function is the anomaly probability
        return XGBOD(random_state=seed).fit(X, y).decision_function

    def knn_ratio(X, y):
        normal = NearestNeighbors(n_neighbors=5).fit(X[y == 0])
        known = NearestNeighbors(n_neighbors=1).fit(X[y == 1])
        return lambda X_test: _knn_ratio(normal, known, X_test)

    methods = {f"{name}{LABELS}": package(getattr(sklearn_flowod, name))
               for name in registry.package_detectors()}
    methods["HistGradientBoosting"] = classifier(
        lambda: HistGradientBoostingClassifier(class_weight="balanced", random_state=seed))
    methods["PyOD XGBOD"] = xgbod
    methods["kNN ratio"] = knn_ratio
    return methods


def _one_class_methods() -> dict[str, registry.Entry]:
    """Methods that ignore the labels: the package's defaults, PyOD KNN, IsolationForest."""
    return {**registry.package_detectors(), "PyOD KNN": registry.pyod_peers()["PyOD KNN"],
            "IsolationForest": registry.sklearn_peers()["IsolationForest"]}


def _auroc(y_test, scores, normal, scored) -> float:
    rows = np.r_[normal, scored]
    return roc_auc_score(y_test[rows], scores[rows])


def evaluate_split(split: adbench.Split, methods: list[str] | None = None) -> list[dict]:
    """Every method's rows (budgets x conditions) on one split."""
    normal = np.flatnonzero(split.y_test == 0)
    designs = {(b, c): labelled_rows(split, b, c) for b in BUDGETS for c in CONDITIONS}
    rows = []

    def record(name, kind, budget, condition, auroc, fit_s, n_labelled):
        rows.append({"dataset": split.dataset, "seed": split.seed, "budget": budget,
                     "condition": condition, "method": name, "kind": kind, "auroc": auroc,
                     "fit_s": fit_s, "n_labelled": n_labelled})
        print(f"{split.dataset:<22}seed {split.seed} {budget:>2} {condition:<5} {name:<40}"
              f"AUROC {auroc:.3f}  fit {fit_s:.1f}s", flush=True)

    for name, entry in _one_class_methods().items():
        if methods and name not in methods:
            continue
        estimator = entry.make(split.seed)
        start = time.perf_counter()
        estimator.fit(split.X_train)
        fit_s = time.perf_counter() - start
        scores = entry.anomaly_score(estimator, split.X_test)
        kind = "package" if entry.family == "package" else "peer"
        for (budget, condition), (_, scored) in designs.items():
            record(name, kind, budget, condition, _auroc(split.y_test, scores, normal, scored),
                   fit_s, 0)
    for name, fit in _labelled_methods(split.seed).items():
        if methods and name not in methods:
            continue
        for (budget, condition), (labelled, scored) in designs.items():
            X = np.vstack([split.X_train, split.X_test[labelled]])
            y = np.r_[np.zeros(len(split.X_train), int), np.ones(len(labelled), int)]
            start = time.perf_counter()
            score = fit(X, y)
            fit_s = time.perf_counter() - start
            scores = score(split.X_test)
            kind = "package" if name.endswith(LABELS) else "peer"
            record(name, kind, budget, condition, _auroc(split.y_test, scores, normal, scored),
                   fit_s, len(labelled))
    return rows


def summary_lines(results: pd.DataFrame) -> list[str]:
    """The acceptance lines: best package and best peer mean AUROC per budget and condition."""
    lines = []
    for budget in BUDGETS:
        for condition in CONDITIONS:
            chosen = results[(results["budget"] == budget) & (results["condition"] == condition)]
            means = chosen.groupby(["kind", "method"])["auroc"].mean() * 100
            best = {kind: means[kind].idxmax() for kind in ("package", "peer")}
            lines.append(f"semi-supervised summary: {budget} {condition}: best package "
                         f"{best['package']} {means['package'][best['package']]:.2f}; best peer "
                         f"{best['peer']} {means['peer'][best['peer']]:.2f}")
    return lines


def fit_time_ratios(results: pd.DataFrame) -> pd.Series:
    """Per package detector: the median over data sets of its fit time with labels over
    its one-class default fit time (the labelled fit: mean over budgets, conditions, seeds)."""
    fit = results[results["kind"] == "package"].groupby(["method", "dataset"])["fit_s"].mean()
    ratios = {}
    for method in fit.index.get_level_values("method").unique():
        if method.endswith(LABELS):
            base = method[: -len(LABELS)]
            ratios[base] = (fit[method] / fit[base]).median()
    return pd.Series(ratios, name="fit time with labels / without (median over data sets)")


def write_page(results: pd.DataFrame, path: Path, header: str) -> None:
    columns = [f"{b} {c}" for b in BUDGETS for c in CONDITIONS]
    results = results.assign(column=results["budget"] + " " + results["condition"])
    means = results.pivot_table(index="method", columns="column", values="auroc") * 100
    means = means[columns].sort_values(columns[0], ascending=False)
    kinds = results.groupby("method")["kind"].first()
    means.insert(0, "kind", kinds[means.index])
    parts = [header + report.provenance(results, "method"),
             "Protocol: the module docstring of `benchmarks/semi_supervised.py` (seeds "
             f"{', '.join(map(str, sorted(results['seed'].unique())))}, "
             f"{results['dataset'].nunique()} data sets).", "",
             "## Mean AUROC (x100) per budget and condition", "",
             report.markdown_table(means), "",
             "## Fit time with labels against the one-class default fit", "",
             report.markdown_table(fit_time_ratios(results).to_frame(), "{:.2f}"), ""]
    for column in columns:
        table = results[results["column"] == column].pivot_table(
            index="dataset", columns="method", values="auroc") * 100
        parts += [f"## AUROC (x100) per data set: {column}, mean over seeds", "",
                  report.markdown_table(table), ""]
    parts += summary_lines(results)
    path.write_text("\n".join(parts) + "\n")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    adbench.add_split_arguments(parser)
    parser.add_argument("--methods", nargs="+", help="method names (default: all)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--from-csv", action="store_true",
                        help="run nothing: rebuild the page from semi_supervised.csv")
    args = parser.parse_args(argv)
    header = report.header("Known anomalies: detection with a few labelled anomalies",
                           report.command_line("semi_supervised", argv).strip())
    csv = args.out_dir / "semi_supervised.csv"
    if args.from_csv:
        results = report.kept(pd.read_csv(csv))
        write_page(results, args.out_dir / "semi_supervised.md", header)
        return results
    rows = []
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split in adbench.splits(args.datasets, args.seeds, args.data_dir):
        rows += evaluate_split(split, args.methods)
        # the files hold every finished split, so that a cut-off run keeps them
        results = report.stamped(pd.DataFrame(rows))
        results.to_csv(csv, index=False, float_format="%.6g")
        write_page(results, args.out_dir / "semi_supervised.md", header)
    return results


if __name__ == "__main__":
    main()
