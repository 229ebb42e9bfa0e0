"""Observed false-alarm rates of the conformal thresholds on the ADBench dev sets.

Usage (from the project root)::

    python -m benchmarks.calibration --name calibration

On every split of ``adbench.py`` each package detector is fitted with its
defaults (``random_state`` = the seed); its validation split calibrates the
p-values (``pvalues``). For every requested rate ``a``, a cell (data set,
seed, detector) records the share of the split's held-out normal test rows
that ``predict`` flags after ``set_false_alarm_rate(a)`` (the default, the
attainable rate nearest to ``a``) and after ``set_false_alarm_rate(a,
at_most=True)``. A cell *exceeds* when that share is above
``a + margin + 1 / (n_calibration + 1)``, with ``margin`` the 99% margin of
the two binomial samples the share depends on (:func:`with_bounds`).
``<name>.md`` summarises, per detector and rate, the mean observed share,
its error relative to ``a`` and the share of cells that exceed, then lists
every cell (see :func:`with_bounds` for the margin). ``--detectors`` runs
some detectors only (``--detectors`` with no name: none), ``--include`` adds
the rows of earlier result files (parts run in parallel).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binom, norm

import sklearn_flowod

from . import adbench, quality, registry, report

RATES = (0.01, 0.05, 0.1)
#: The acceptance bounds: the mean observed rate within this relative error
#: of the requested one, and at most this share of cells exceeding.
MAX_RELATIVE_ERROR = 0.2
MAX_EXCEEDING = 0.1
#: The one-sided 99% quantile of the standard normal distribution.
Z_99 = float(norm.ppf(0.99))


def cell_rows(name: str, split: adbench.Split, rates=RATES) -> list[dict]:
    """One row per rate for detector ``name`` on ``split``."""
    detector = getattr(sklearn_flowod, name)(random_state=split.seed)
    start = time.perf_counter()
    detector.fit(split.X_train)
    fit_s = time.perf_counter() - start
    normal = split.X_test[split.y_test == 0]
    n_calibration = len(detector.calibration_scores_)
    rows = []
    for rate in rates:
        observed = {}
        for at_most in (False, True):
            with warnings.catch_warnings():  # a small set cannot flag at 1%: it says so
                warnings.simplefilter("ignore", UserWarning)
                detector.set_false_alarm_rate(rate, at_most=at_most)
            observed[at_most] = float(np.mean(detector.predict(normal) == -1))
        rows.append({"dataset": split.dataset, "seed": split.seed, "detector": name,
                     "rate": rate, "n_calibration": n_calibration, "n_normal": len(normal),
                     "observed": observed[False], "observed_at_most": observed[True],
                     "fit_s": fit_s})
    return rows


def with_bounds(results: pd.DataFrame) -> pd.DataFrame:
    """Add each cell's bound and whether it exceeds it (derived from its counts).

    A valid conformal threshold delivers a rate that varies with two binomial
    samples: the calibration rows that set it and the normal rows it is tested
    on. ``margin`` is the one-sided 99% normal quantile of their combined
    spread, ``z * sqrt(a (1 - a) (1 / n_calibration + 1 / n_normal))``;
    ``bound = a + margin + 1 / (n_calibration + 1)``. ``exceeds_test_only``
    uses the tested rows' binomial 99% quantile alone, which a valid
    threshold from a small calibration set exceeds far more often than 1%.
    """
    a, n_cal, n = results["rate"], results["n_calibration"], results["n_normal"]
    slack = 1.0 / (n_cal + 1)
    margin = Z_99 * np.sqrt(a * (1 - a) * (1 / n_cal + 1 / n))
    test_only = binom.ppf(0.99, n, a) / n - a
    return results.assign(bound=a + margin + slack,
                          exceeds=results["observed"] > a + margin + slack,
                          exceeds_test_only=results["observed"] > a + test_only + slack)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per detector and rate: mean observed rate, relative error, share exceeding."""
    grouped = results.groupby(["detector", "rate"])
    table = pd.DataFrame({
        "cells": grouped.size(),
        "mean observed (%)": grouped["observed"].mean() * 100,
        "share of cells exceeding (%)": grouped["exceeds"].mean() * 100,
        "exceeding the tested rows' margin alone (%)":
            grouped["exceeds_test_only"].mean() * 100,
        "mean observed, at_most=True (%)": grouped["observed_at_most"].mean() * 100,
    })
    rate = table.index.get_level_values("rate").to_numpy()
    table["relative error (%)"] = (table["mean observed (%)"] / (100 * rate) - 1) * 100
    table["holds"] = np.where(
        (table["relative error (%)"].abs() <= 100 * MAX_RELATIVE_ERROR)
        & (table["share of cells exceeding (%)"] <= 100 * MAX_EXCEEDING), "yes", "no")
    table.index = [f"{d}, a = {r:.0%}" for d, r in table.index]
    table.index.name = "detector, requested rate"
    return table


def write(results: pd.DataFrame, out_dir: Path, name: str, header: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = with_bounds(results.drop(columns=["bound", "exceeds", "exceeds_test_only"],
                                       errors="ignore"))
    results.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.6g")
    cells = results.assign(
        column=results["detector"] + ", " + results["rate"].map("{:.0%}".format),
        value=(results["observed"] * 100).map("{:.2f}".format)
        + np.where(results["exceeds"], " (over)", ""))
    every = cells.pivot_table(index=["dataset", "seed"], columns="column", values="value",
                              aggfunc="first")
    order = cells.sort_values(["detector", "rate"])["column"].unique()
    every = every[order]
    every.index = [f"{d}, seed {s}" for d, s in every.index]
    every.index.name = "data set, seed"
    n_cal = results.pivot_table(index="dataset", columns="detector", values="n_calibration")
    (out_dir / f"{name}.md").write_text(
        header + report.provenance(results, "detector", marked=True)
        + "\nProtocol: `benchmarks/adbench.py` (one-class); the calibration rows are each "
        "detector's validation split, the tested rows the split's normal test rows. "
        "A cell exceeds when its observed rate is above the requested rate `a` plus its 99% "
        "binomial margin plus 1 / (n_calibration + 1); the margin is that of the two "
        "binomial samples the observed rate depends on, the calibration rows and the tested "
        f"rows: {Z_99:.2f} sqrt(a (1 - a) (1 / n_calibration + 1 / n_normal)). The summary also "
        "counts the cells above the tested rows' binomial 99% quantile alone (plus "
        "1 / (n_calibration + 1)), a margin that leaves out the calibration rows' "
        "sampling.\n\n"
        "## Summary\n\n" + report.markdown_table(summary(results), "{:.2f}")
        + "\n## Calibration rows per data set (mean over seeds)\n\n"
        + report.markdown_table(n_cal, "{:.0f}")
        + "\n## Observed false-alarm rate of every cell (%)\n\n"
        + report.markdown_table(every) + "\n")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", help="data set names (default: all)")
    parser.add_argument("--detectors", nargs="*", help="package detectors (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=adbench.DEFAULT_DATA_DIR)
    parser.add_argument("--name", required=True, help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    parser.add_argument("--include", nargs="+", default=[], metavar="NAME",
                        help="add the rows of earlier result files <NAME>.csv")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.calibration " + " ".join(sys.argv[1:] if argv is None
                                                             else argv)
    header = report.header("Conformal false-alarm rates on ADBench", command)
    names = args.detectors if args.detectors is not None else list(registry.package_detectors())
    rows = []
    for split in adbench.splits(args.datasets, args.seeds, args.data_dir):
        for name in names:
            rows += cell_rows(name, split)
            print(f"{split.dataset:<24}seed {split.seed}  {name:<28}observed "
                  + " ".join(f"{row['observed']:.4f}" for row in rows[-len(RATES):]),
                  flush=True)
    results = report.stamped(pd.DataFrame(rows)) if rows else pd.DataFrame()
    earlier = [report.kept(pd.read_csv(args.out_dir / f"{n}.csv")) for n in args.include]
    results = pd.concat([results, *earlier], ignore_index=True)
    write(results, args.out_dir, args.name, header)
    return results


if __name__ == "__main__":
    main()
