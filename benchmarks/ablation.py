"""Ablation of one detector's settings: the ADBench dev sets and a contaminated grid search.

Usage (from the project root)::

    python -m benchmarks.ablation DeepSVDDDetector \\
        --settings '{}' '{"max_epochs": 20}' --name ablation_deep_svdd_epochs

Every setting (a JSON object of parameters; ``{}`` is the defaults; a value
``{"class": "UniformBox", "params": {"margin": 0.5}}`` stands for that
estimator of ``sklearn_flowod``) is fitted
on the splits of ``adbench.py`` like ``quality.py`` fits a detector, and, with
``--contaminated``, run through :func:`contaminated_search`. Writes
``benchmarks/results/<name>.csv`` (one row per setting, data set and seed,
with its commit) and ``<name>.md``: a summary (setting, mean AUROC, average
rank among the settings, median fit time, the contaminated search's AUROC)
and the per-data-set tables of ``quality.py``. Settings run apart (say one
process per core, each with its own ``--name``) are summarised together by a
run with ``--include`` and their names, with or without settings of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_flowod

from . import adbench, quality, registry, report


def contaminated_folds() -> tuple[np.ndarray, np.ndarray]:
    """400 standard normal rows in 4-D and 40 rows around 5 in every coordinate.

    Labels are +1 (normal) and -1 (the cluster), as ``roc_auc`` scores a
    detector's ``decision_function`` against them.
    """
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((400, 4)), 5.0 + rng.standard_normal((40, 4))])
    return X, np.r_[np.ones(400), -np.ones(40)]


def contaminated_search(detector) -> float:
    """Best AUROC of a grid search over ``random_state`` in {0, 1} on :func:`contaminated_folds`.

    The folds (``StratifiedKFold(3, shuffle=True)``) are fitted with their
    outliers, in ``make_pipeline(StandardScaler(), detector)``, as a user
    without clean training data would.
    """
    X, y = contaminated_folds()
    step = type(detector).__name__.lower()
    search = GridSearchCV(make_pipeline(StandardScaler(), clone(detector)),
                          {f"{step}__random_state": [0, 1]},
                          cv=StratifiedKFold(3, shuffle=True, random_state=0), scoring="roc_auc")
    return float(search.fit(X, y).best_score_)


def _built(setting: dict) -> dict:
    """The setting's parameters, with every ``{"class", "params"}`` value built."""
    def build(value):
        if isinstance(value, dict) and set(value) == {"class", "params"}:
            return getattr(sklearn_flowod, value["class"])(**value["params"])
        return value
    return {name: build(value) for name, value in setting.items()}


def _label(detector: str, params: dict) -> str:
    return f"{detector}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def _summary(results: pd.DataFrame, searched: dict[str, float]) -> str:
    summary = report.auroc_summary(results, median_fit=True)
    if searched:
        summary["contaminated search AUROC"] = pd.Series(searched)
    summary.index.name = "setting"
    return "## Summary\n\n" + report.markdown_table(summary, "{:.2f}") + "\n"


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector", help="a detector class of sklearn_flowod")
    parser.add_argument("--settings", nargs="+", default=[], type=json.loads,
                        help="JSON objects of parameters ('{}': the defaults)")
    adbench.add_split_arguments(parser)
    parser.add_argument("--contaminated", action="store_true",
                        help="also run every setting through the contaminated grid search")
    parser.add_argument("--name", required=True, help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    parser.add_argument("--include", nargs="+", default=[], metavar="NAME",
                        help="add the rows of earlier result files <NAME>.csv (other settings, "
                        "same splits), e.g. of parts run in parallel")
    args = parser.parse_args(argv)
    if not args.settings and not args.include:
        parser.error("give --settings, --include or both")
    command = "python -m benchmarks.ablation " + " ".join(
        f"'{a}'" if " " in a or "{" in a else a for a in (sys.argv[1:] if argv is None else argv))
    header = report.header(f"Ablation of {args.detector}", command)
    cls = getattr(sklearn_flowod, args.detector)
    settings = {_label(args.detector, params): params
                for params in map(_built, args.settings)}
    # clone: every fit gets its own copy of an estimator-valued parameter
    entries = {label: registry.Entry(
        lambda seed, p=params: clone(cls(random_state=seed, **p)),
        registry.negated_score_samples, "package") for label, params in settings.items()}
    searched = {label: contaminated_search(cls(device="cpu", **params))
                for label, params in settings.items()} if args.contaminated else {}
    datasets = args.datasets or adbench.available(args.data_dir)
    results = report.stamped(pd.DataFrame(quality.evaluate_all(
        entries, adbench.splits(datasets, args.seeds, args.data_dir)))) if entries else (
        pd.DataFrame())
    for name in args.include:  # the rows of settings run elsewhere, on the same splits
        rows = report.kept(pd.read_csv(args.out_dir / f"{name}.csv"))
        rows = rows[rows["dataset"].isin(datasets) & rows["seed"].isin(args.seeds)
                    & ~rows["detector"].isin(list(settings))]
        results = pd.concat([results, rows]).drop_duplicates(["dataset", "detector", "seed"])
    report.write_study(results, args.out_dir, args.name, header, args.seeds,
                       _summary(results, searched))
    return results


if __name__ == "__main__":
    main()
