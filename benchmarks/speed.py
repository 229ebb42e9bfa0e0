"""Training and scoring speed of the package's detectors, beside IsolationForest and kNN.

Usage (from the project root, ``pip install -e ".[bench,distributed]"``)::

    python -m benchmarks.speed            # the full run (its duration: see speed.md)
    python -m benchmarks.speed --quick    # a small grid, to check that it runs

Every measurement runs with torch's default threads, as a user's script does
(each detector then chooses its threads per fit, see "Threads" in the user
guide's devices page); ``--threads N`` sets N torch threads and thread
variables for the fit measurements instead. Scoring and the default fit run
in fresh processes with the user's thread variables either way.

Writes ``benchmarks/results/speed.csv`` (one row per measurement, a
``section`` column says which, ``commit`` and ``dirty`` the code it was
made with; rows kept by ``--update`` keep their own), ``speed.md`` (the tables) and
``docs/figures/speed_fit_time.png`` (fit time against the number of rows).
Sections:

* ``fit_time``: the default fit's wall-clock time for every n (d = 32).
* ``large_table``: the flows' default fit on a 280,000 x 30 fraud-like table.
* ``scoring``: rows per second of every detector's anomaly score beside PyOD's
  kNN and IsolationForest on the same rows, at 30 features (10,000 training
  rows, 1e6 rows scored) and 512 features (5,000 training rows, 2e5 rows),
  each in a fresh process with torch's default threads
  (:mod:`benchmarks.scoring_memory`); the peak memory of scoring 1e7 rows;
  matmul FLOPs per row.
* ``distributed``: scoring 1e7 rows with ``score_partitions`` on a local Dask
  cluster against in-process (:mod:`benchmarks.distributed_scoring`).
* ``default_fit``: what a user gets, in a fresh process with torch's default
  threads (the thread variables of the user's environment, not ``--threads``):
  the default fit time of every package detector, made with only
  ``random_state`` set, divided by that of ``IsolationForest(random_state=0)``
  fitted alternately with them, on the training rows of six ADBench tables;
  the same while helper processes keep every core busy (slowdown: busy over
  idle fit time; a busy fit is stopped after 10 times its idle time, at
  least 10 s); and on a wide synthetic table, 500 x 1,500
  (:mod:`benchmarks.default_fit`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import page_state, registry, report
from .default_fit import BUSY_LIMIT_FACTOR, QUICK_WIDE_SHAPE, WIDE_SHAPE
from .default_fit import DATASETS as DEFAULT_FIT_DATASETS
from .default_fit import QUICK_DATASETS as QUICK_DEFAULT_FIT_DATASETS
from .instrumented_fit import instrumented_fit

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIGURE_DIR = Path(__file__).resolve().parent.parent / "docs" / "figures"

FULL = {
    "rows": [1_000, 10_000, 100_000],
    "large_rows": 280_000,
    # (training rows, rows scored, features): every detector and peer
    "scoring": [(10_000, [1_000_000], 30), (5_000, [200_000], 512)],
    # (detector, training rows, rows scored, features): the memory of 1e7 rows
    "scoring_memory": [("FlowDetector", 10_000, 10_000_000, 30),
                       ("PyOD KNN", 10_000, 10_000_000, 30)],
    "distributed_rows": 10_000_000,
    "default_fit_datasets": DEFAULT_FIT_DATASETS,
    "default_fit_wide": WIDE_SHAPE,
    "default_fit_busy_limit": BUSY_LIMIT_FACTOR,
}
QUICK = {
    "rows": [1_000, 10_000],
    "large_rows": 20_000,
    "scoring": [(2_000, [20_000], 30), (1_000, [5_000], 64)],
    "scoring_memory": [("FlowDetector", 2_000, 100_000, 30)],
    "distributed_rows": 1_000_000,
    "default_fit_datasets": QUICK_DEFAULT_FIT_DATASETS,
    "default_fit_wide": QUICK_WIDE_SHAPE,
    "default_fit_busy_limit": 3.0,
}


def _make(entry, **params):
    detector = entry.make(0)
    return detector.set_params(device="cpu", **params)


def fit_time(grid: dict, log) -> list[dict]:
    rows = []
    rng = np.random.default_rng(1)
    for n in grid["rows"]:
        X = rng.standard_normal((n, 32))
        for name, entry in registry.package_detectors().items():
            detector = _make(entry)
            start = time.perf_counter()
            detector.fit(X)
            seconds = time.perf_counter() - start
            rows.append({"section": "fit_time", "detector": name, "rows": n, "features": 32,
                         "fit_s": seconds, "n_epochs": detector.n_epochs_})
            log(f"fit time {name} n={n}: {seconds:.1f} s")
    return rows


def _fraud_split(n_rows: int, n_features: int = 30, seed: int = 0):
    from sklearn_flowod.datasets import make_fraud_like

    n_test = max(n_rows // 4, 2_000)
    X, y = make_fraud_like(n_rows + n_test, n_components=n_features - 4, random_state=seed)
    X_train = X[:n_rows][y[:n_rows] == 0]
    return X_train, (X[n_rows:], y[n_rows:])


def _test_auroc(detector, evaluation) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(evaluation[1], detector.anomaly_score(evaluation[0])))


def large_table(grid: dict, log) -> list[dict]:
    X_train, evaluation = _fraud_split(grid["large_rows"])
    rows = []
    for name in ["FlowDetector", "ContrastiveFlowDetector"]:
        entry = registry.package_detectors()[name]
        detector = _make(entry)
        record = instrumented_fit(detector, X_train, evaluation=evaluation)
        final = _test_auroc(detector, evaluation)
        best = max(auroc for _, _, auroc in record.curve)
        rows.append({
            "section": "large_table", "detector": name, "rows": X_train.shape[0],
            "features": X_train.shape[1], "default_fit_s": record.fit_s,
            "n_epochs": record.n_epochs, "default_auroc": final, "best_epoch_auroc": best,
            "samples_per_s": record.samples_per_s,
        })
        log(f"large table {name}: fit {record.fit_s:.1f} s, AUROC {final:.4f}")
    return rows


#: The peers whose scoring is timed beside the package's, in the same run.
SCORING_PEERS = ["PyOD KNN", "IsolationForest"]
#: A rows-per-second cell is the fastest of this many passes (this machine is shared).
SCORING_REPEATS = 2


def scoring(grid: dict, user_threads: dict[str, str | None], log) -> list[dict]:
    """Rows per second and peak memory of every detector's anomaly score.

    Each measurement runs in a fresh process with the user's thread variables
    (:func:`_user_environment`), so torch and the peers run with their default
    threads, as a user's script would; see :mod:`benchmarks.scoring_memory`.
    """
    rows = []
    names = [*registry.package_detectors(), *SCORING_PEERS]
    cells = [(name, train, n, d, SCORING_REPEATS) for train, sizes, d in grid["scoring"]
             for n in sizes for name in names]
    cells += [(name, train, n, d, 1) for name, train, n, d in grid["scoring_memory"]]
    for name, train, n, d, repeats in cells:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.scoring_memory", name, str(n), str(d),
             "--train-rows", str(train), "--repeats", str(repeats)],
            capture_output=True, text=True, check=True, env=_user_environment(user_threads),
            cwd=Path(__file__).resolve().parent.parent)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(section="scoring")
        rows.append(result)
        log(f"scoring {name} d={d} train={train} n={n}: {result['rows_per_s']:,.0f} rows/s "
            f"({result['torch_threads']} threads), scoring peak "
            f"{result['scoring_peak_bytes'] / 2**20:,.0f} MiB")
    return rows


def distributed(grid: dict, log) -> list[dict]:
    try:
        from .distributed_scoring import ScoringConfig, measure
    except ImportError:  # pragma: no cover - the distributed extra is missing
        return []
    config = ScoringConfig(rows=grid["distributed_rows"], features=30, repeats=1)
    table = measure(config, log=log)
    return [{"section": "distributed", "detector": "InvertibleOneClassDetector (small)",
             "setting": row["setting"], "rows": row["rows"], "features": row["features"],
             "rows_per_s": row["rows_per_s"], "equal_to_in_process": row["equal_to_in_process"]}
            for row in table.to_dict("records")]


#: The thread variables that ``main`` sets to ``--threads``.
THREAD_VARIABLES = ["OMP_NUM_THREADS", "MKL_NUM_THREADS"]


def _user_environment(user_threads: dict[str, str | None]) -> dict[str, str]:
    """This process's environment with the thread variables as the user had them.

    ``user_threads`` maps each of :data:`THREAD_VARIABLES` to its value before
    ``main`` set it, ``None`` where it was not set (it is then removed).
    """
    env = dict(os.environ)
    for variable, value in user_threads.items():
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = value
    return env


def default_fit(grid: dict, user_threads: dict[str, str | None], log) -> list[dict]:
    """The rows of :mod:`benchmarks.default_fit`, measured in a fresh process.

    The process gets the user's thread variables (:func:`_user_environment`),
    so torch runs with its default threads, not ``--threads``.
    """
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "default_fit.json"
        wide_rows, wide_features = grid["default_fit_wide"]
        command = [sys.executable, "-m", "benchmarks.default_fit", str(out),
                   "--datasets", *grid["default_fit_datasets"],
                   "--wide", str(wide_rows), str(wide_features),
                   "--busy-limit", str(grid["default_fit_busy_limit"])]
        log("default fit: " + " ".join(command[1:]))
        subprocess.run(command, check=True, env=_user_environment(user_threads),
                       cwd=Path(__file__).resolve().parent.parent)
        rows = json.loads(out.read_text())
    return [{"section": "default_fit", **row} for row in rows]


# ---------------------------------------------------------------------- #
# Result files
# ---------------------------------------------------------------------- #
def _rows_per_s(value: float) -> str:
    return f"{value:,.0f}"


_COUNTS = ["rows", "features", "epochs", "n_epochs"]


def _counts_as_int(table: pd.DataFrame) -> pd.DataFrame:
    """Whole-number columns (read back from the CSV as floats) printed without decimals."""
    table = table.copy()
    for column in _COUNTS:
        if column in table.columns:
            table[column] = table[column].map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
    return table


def _tables(results: pd.DataFrame) -> str:
    parts = []
    section = results[results["section"] == "fit_time"]
    if len(section):
        table = section.pivot_table(index="detector", columns="rows", values="fit_s")
        table.columns = [f"n = {int(c):,}" for c in table.columns]
        parts += ["## Default fit time in seconds (d = 32)", "",
                  "Figure: `docs/figures/speed_fit_time.png`.", "",
                  report.markdown_table(table), ""]
    section = results[results["section"] == "large_table"]
    if len(section):
        table = section.set_index("detector").reindex(columns=[
            "rows", "features", "default_fit_s", "n_epochs", "samples_per_s",
            "default_auroc", "best_epoch_auroc"])
        for column in ["default_auroc", "best_epoch_auroc"]:
            table[column] = table[column] * 100
        parts += ["## Default fit on a 280,000-row fraud-like table", "",
                  "Training rows are the normal rows among the first 280,000 of "
                  "`make_fraud_like` with 30 columns; best epoch AUROC: the best held-out "
                  "AUROC seen after any epoch of the same fit.", "",
                  report.markdown_table(_counts_as_int(table), "{:.2f}"), ""]
    section = results[results["section"] == "scoring"]
    if len(section):
        parts += _scoring_tables(section)
    section = results[results["section"] == "distributed"]
    if len(section):
        table = section.set_index("setting")[["rows", "features", "rows_per_s",
                                              "equal_to_in_process"]]
        table = table.assign(rows_per_s=table["rows_per_s"].map(_rows_per_s))
        parts += ["## Scoring on a local Dask cluster", "",
                  "`score_partitions` on a `LocalCluster` (2 workers x 1 thread) against "
                  "in-process scoring of the same rows; see `distributed_scoring.py`. "
                  "equal_to_in_process: the same bits as the first row. Other row counts "
                  "per batch may take other matrix kernels on some processors, which "
                  "change the last bits; the scores then agree to float64 rounding "
                  "(see \"Scaling out\" in the user guide).", "",
                  report.markdown_table(_counts_as_int(table)), ""]
    section = results[results["section"] == "default_fit"]
    if len(section):
        parts += _default_fit_tables(section)
    return "\n".join(parts)


def _scoring_tables(section: pd.DataFrame) -> list[str]:
    """Rows per second beside the peers, per table shape; then memory."""
    parts = ["## Scoring: rows per second beside kNN and IsolationForest", "",
             "The anomaly score (default parameters; the package's detectors trained two "
             "epochs, which does not change the cost of a row) of float32 standard normal "
             "rows, in a fresh process per cell with torch's default threads (the user's "
             "thread variables), fitted on the float32 training rows given; the fastest of "
             f"{SCORING_REPEATS} passes over the rows. The INN-based "
             "detectors keep their training split (85% of those rows) as neighbours, "
             f"PyOD KNN all of them. Relative: rows per second over {SCORING_PEERS[0]}'s "
             "in the same column.", ""]
    for (d, train, n), cell in section.groupby(["features", "train_rows", "rows"]):
        if cell["detector"].nunique() < 3:  # a memory-only cell
            continue
        rates = cell.set_index("detector")["rows_per_s"]
        peer = rates.get(SCORING_PEERS[0], np.nan)
        table = pd.DataFrame({"rows per second": rates.map(_rows_per_s),
                              f"over {SCORING_PEERS[0]}": (rates / peer).map("{:.2f}".format),
                              "threads": cell.set_index("detector")["torch_threads"].map(
                                  "{:.0f}".format)})
        parts += [f"### {int(d)} features, {int(train):,} training rows, {int(n):,} rows scored",
                  "", report.markdown_table(table), ""]
    table = section.set_index(["detector", "features", "rows"])[
        ["rows_per_s", "flops_per_row", "scoring_peak_bytes", "output_bytes"]].copy()
    table["rows_per_s"] = table["rows_per_s"].map(_rows_per_s)
    for column in ["scoring_peak_bytes", "output_bytes"]:
        table[column] = table[column] / 2**20
    table = table.rename(columns={"scoring_peak_bytes": "scoring peak (MiB)",
                                  "output_bytes": "output (MiB)"})
    table.index = [f"{name}, d = {int(d)}, {int(n):,} rows" for name, d, n in table.index]
    parts += ["### Memory and FLOPs", "",
              "Scoring peak: peak resident memory minus the resident memory just before "
              "scoring (input already in memory; the output array is part of the peak). "
              "FLOPs per row are the network's float64 matmul FLOPs plus, with neighbours, "
              "the float32 products of both searches.",
              "", report.markdown_table(table, "{:,.0f}"), ""]
    return parts


def _bounded(values: pd.Series, lower_bound: pd.Series, statistic: str) -> str:
    """The median or maximum of ``values``, marked ≥ where a lower bound can change it.

    ``lower_bound`` flags the values that are only lower bounds (stopped fits):
    any of them can raise the maximum; the median only when one is at or
    below the upper of its middle positions in sorted order.
    """
    ordered = lower_bound[values.sort_values(kind="stable").index]
    if statistic == "max":
        result, bounded = values.max(), ordered.any()
    else:
        result, bounded = values.median(), ordered.iloc[: len(values) // 2 + 1].any()
    return ("≥ " if bounded else "") + f"{result:.2f}"


def _load_range(rows: pd.DataFrame) -> str:
    return f"{rows['load_average'].min():.2f} to {rows['load_average'].max():.2f}"


def _default_fit_tables(section: pd.DataFrame) -> list[str]:
    """The default_fit section: ratios to IsolationForest, busy slowdown, wide table."""
    threads = ", ".join(str(int(t)) for t in sorted(section["torch_threads"].unique()))
    idle = section[section["condition"] == "idle"]
    busy = section[section["condition"] == "busy"]
    wide = section[section["condition"] == "wide"]
    parts = []
    if len(idle):
        datasets = list(pd.unique(idle["dataset"]))
        ratios = idle.pivot_table(index="detector", columns="dataset", values="ratio",
                                  dropna=False).reindex(columns=datasets)
        table = pd.concat([ratios.median(axis=1).rename("median ratio"), ratios], axis=1)
        table["median fit (s)"] = idle.groupby("detector")["fit_s"].median()
        iforest = idle.groupby("dataset")["iforest_fit_s"].median()
        parts += ["## Default fit time over IsolationForest's", "",
                  "Fit time of each package detector made with only `random_state` set "
                  "(the median of its fits, `repeats` in the CSV, each between two "
                  "IsolationForest fits), divided by that of `IsolationForest(random_state=0)` "
                  "fitted right beside it (the median of the IsolationForest fits right "
                  "before and right after its fits; the fits alternate in one process), on "
                  "the training rows of "
                  "`adbench.load_split(name, seed=0)`; median ratio: over the tables. A "
                  "fresh process with torch's default threads "
                  f"({threads}) and the thread variables of the user's environment. "
                  f"IsolationForest's fits took {iforest.min():.2f} to {iforest.max():.2f} s "
                  f"(median per table); 1-minute load average {_load_range(idle)}.", "",
                  report.markdown_table(table, "{:.1f}"), ""]
    if len(busy):
        both = busy.merge(idle[["dataset", "detector", "fit_s", "iforest_fit_s"]],
                          on=["dataset", "detector"], suffixes=("", "_idle"))
        stopped = both["timed_out"].astype(str) == "True"
        # a stopped fit's slowdown is at least its limit over the idle time
        slowdown = both["fit_s"].where(~stopped, both["fit_limit_s"]) / both["fit_s_idle"]
        table = pd.DataFrame({
            detector: [_bounded(slowdown[rows], stopped[rows], "median"),
                       _bounded(slowdown[rows], stopped[rows], "max")]
            for detector, rows in both.groupby("detector").groups.items()
        }, index=["median slowdown", "max slowdown"]).T
        iforest = both["iforest_fit_s"] / both["iforest_fit_s_idle"]
        table.loc["IsolationForest (fitted beside them)"] = [f"{iforest.median():.2f}",
                                                             f"{iforest.max():.2f}"]
        table.index.name = "detector"
        first = busy.iloc[0]
        parts += ["## Default fit under load: busy over idle fit time", "",
                  f"The same alternating fits while {int(first['busy_workers'])} helper "
                  "processes (one per core) spin in a Python loop; slowdown: busy fit time "
                  "over the idle fit time of the same table and detector; median and "
                  f"maximum over the {busy['dataset'].nunique()} tables (IsolationForest: "
                  "over every fit beside a detector). A busy fit was stopped after "
                  f"{first['busy_limit']:g} times its idle fit time, at least "
                  f"{first['busy_limit_floor_s']:g} s ({int(stopped.sum())} of {len(both)} "
                  "were); a stopped fit counts as its limit, and a statistic that such a "
                  "lower bound can change is marked ≥. 1-minute load average during the "
                  f"busy fits {_load_range(busy)} (idle: {_load_range(idle)}).", "",
                  report.markdown_table(table), ""]
    if len(wide):
        table = wide.set_index("detector")[["fit_s", "iforest_fit_s", "ratio", "n_epochs"]]
        table = table.rename(columns={"fit_s": "fit (s)",
                                      "iforest_fit_s": "IsolationForest fit (s)"})
        n_rows, n_features = int(wide["rows"].iloc[0]), int(wide["features"].iloc[0])
        parts += [f"## Default fit on a wide table ({n_rows:,} x {n_features:,})", "",
                  "Standard normal rows times a seeded random matrix (correlated "
                  "columns), fitted as above (idle, torch's default threads "
                  f"({threads})); the IsolationForest fits alternate with them.", "",
                  report.markdown_table(_counts_as_int(table), "{:.2f}"), ""]
    errors = section[section["error"].notna() & (section["error"].astype(str) != "")]
    if len(errors):
        parts += ["Fits that raised (blank cells above): " + "; ".join(
            f"{row.detector} on {row.dataset} ({row.condition}): {row.error}"
            for row in errors.itertuples()) + ".", ""]
    return parts


def _figure(results: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    section = results[results["section"] == "fit_time"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, group in section.groupby("detector"):
        ax.plot(group["rows"], group["fit_s"], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="training rows n (d = 32)",
           ylabel="default fit time (s)", title="Fit time against the number of rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    page_state.stamp_png(path, ",".join(report.row_commits(section)))


SECTIONS = ["fit_time", "large_table", "scoring", "distributed", "default_fit"]


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid")
    parser.add_argument("--sections", nargs="*", choices=SECTIONS, default=SECTIONS,
                        help="the sections to run (none, with --update: only rewrite the page)")
    parser.add_argument(
        "--update", action="store_true",
        help="keep the rows of the sections not run from the existing <name>.csv",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch threads of the fit measurements (default: torch's default)",
    )
    parser.add_argument("--name", default="speed", help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    grid = QUICK if args.quick else FULL
    default_threads = torch.get_num_threads()
    # the user's own values, for the default_fit section's process
    user_threads = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    fit_threads = default_threads if args.threads is None else args.threads
    torch.set_num_threads(fit_threads)
    if args.threads is not None:
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(args.threads)
    command = "python -m benchmarks.speed " + " ".join(sys.argv[1:] if argv is None else argv)

    def log(message):
        print(message, flush=True)

    started = time.perf_counter()
    page = report.header("Training and scoring speed", command.strip())
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    page += (f"- torch threads: {torch.get_num_threads()}; load average (1, 5, 15 min) "
             f"before the run: {load}\n")
    csv_path = args.out_dir / f"{args.name}.csv"
    earlier = pd.read_csv(csv_path) if args.update and csv_path.exists() else None
    rows = []
    for section in args.sections:
        if section == "fit_time":
            rows += fit_time(grid, log)
        elif section == "large_table":
            rows += large_table(grid, log)
        elif section == "scoring":
            rows += scoring(grid, user_threads, log)
        elif section == "default_fit":
            rows += default_fit(grid, user_threads, log)
        else:  # compares torch's default threads in-process with one per worker
            torch.set_num_threads(default_threads)
            rows += distributed(grid, log)
            torch.set_num_threads(fit_threads)
    torch.set_num_threads(default_threads)
    page += f"- duration of the run: {(time.perf_counter() - started) / 60:.0f} min\n"
    results = report.stamped(pd.DataFrame(rows))
    if earlier is not None:  # the kept rows keep their commits
        earlier = report.kept(earlier)
        kept = earlier[~earlier["section"].isin(args.sections)]
        results = pd.concat([results, kept], ignore_index=True)
    page_path = args.out_dir / f"{args.name}.md"
    rewrite = earlier is not None and not args.sections
    if rewrite and page_path.exists():  # the header of the run that measured the rows
        page = page_path.read_text().split("- rows from commits:")[0]
    page += report.provenance(results, "section")
    if rewrite:
        page += (f"\nThis page was rewritten from `{args.name}.csv` without measuring "
                 f"anything, at {report.this_run()[0]}: the header above is that of the run "
                 "that measured the rows, the commit of each section's rows is listed above.\n")
    elif earlier is not None:
        page += ("\nSections " + ", ".join(sorted(set(kept["section"]))) + " are kept "
                 "from an earlier run (see the git history of this file for "
                 "its header).\n")
    page += "\n" + _tables(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # enough digits that a later --update renders the kept sections unchanged
    results.to_csv(csv_path, index=False, float_format="%.10g")
    page_path.write_text(page)
    if (results["section"] == "fit_time").any():  # drawn from the rows, run now or kept
        figure_dir = FIGURE_DIR if args.out_dir == RESULTS_DIR else args.out_dir
        _figure(results, figure_dir / f"{args.name}_fit_time.png")
    return results


if __name__ == "__main__":  # dask worker processes re-import this module
    main()
