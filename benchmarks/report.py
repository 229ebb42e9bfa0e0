"""Markdown tables and run metadata for the benchmark result files."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

LIBRARIES = ["sklearn-flowod", "torch", "FrEIA", "scikit-learn", "numpy", "pyod"]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


#: The ``commit`` of a row read from a result file written before rows recorded it.
UNKNOWN = "unknown"
#: The mark of a table column holding rows made with uncommitted changes.
DIRTY_MARK = " †"


@functools.cache
def this_run() -> tuple[str, bool | None]:
    """The short hash of HEAD and whether the working tree has uncommitted changes.

    Read once per process (the code that runs is the code at its start) from
    the repository holding this module; ``("unknown", None)`` without git. A
    dirty tree is reported on stderr: the rows of the run are marked, not refused.
    """
    git = ["git", "-C", str(Path(__file__).resolve().parent)]
    try:
        out = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)
        status = subprocess.run([*git, "status", "--porcelain"], capture_output=True,
                                text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN, None
    commit, dirty = out.stdout.strip(), bool(status.stdout.strip())
    if dirty:
        print(f"WARNING: the working tree has uncommitted changes (HEAD {commit}): the "
              "rows of this run are recorded with dirty=True and flagged in its report.",
              file=sys.stderr, flush=True)
    return commit, dirty


def commit_label() -> str:
    """The commit of this run, with "+uncommitted" when the tree was dirty."""
    commit, dirty = this_run()
    return commit + ("+uncommitted" if dirty else "")


def row_commits(rows: pd.DataFrame) -> list[str]:
    """The distinct commits of result rows (:func:`stamped`, :func:`kept`), in order,
    each with "+uncommitted" when rows of it were made from a dirty tree."""
    commits = (rows["commit"].fillna(UNKNOWN).astype(str) if "commit" in rows
               else pd.Series(UNKNOWN, rows.index))
    labels = [f"{c}+uncommitted" if d else c for c, d in zip(commits, _dirty_rows(rows),
                                                             strict=True)]
    return list(dict.fromkeys(labels))


def stamped(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` made by this run, with its ``commit`` and ``dirty`` columns.

    Rows that already name their commit (made by a helper process of the run,
    which read its own) keep it.
    """
    commit, dirty = this_run()
    rows = rows.copy()
    for column, value in [("commit", commit), ("dirty", dirty)]:
        rows[column] = rows[column].where(rows[column].notna(), value) if column in rows \
            else value
    return rows


def _dirty(value) -> bool | None:
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None if pd.isna(value) else bool(value)


def kept(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows read from an earlier result file, with their own ``commit`` and ``dirty``.

    A file written before rows recorded them gives ``commit`` "unknown" and
    ``dirty`` None; an older ``commit`` value "<hash>+uncommitted" (the
    default_fit rows of speed.csv) gives the hash and ``dirty`` True.
    """
    rows = rows.copy()
    commits = rows["commit"] if "commit" in rows else pd.Series(None, rows.index, object)
    recorded = commits.notna() & (commits.astype(str) != "")
    legacy = recorded & commits.astype(str).str.endswith("+uncommitted")
    if "dirty" in rows:
        dirty = rows["dirty"].map(_dirty)
    else:  # an older file: a recorded hash without the suffix was clean
        dirty = recorded.map({True: False, False: None})
    rows["dirty"] = pd.Series([True if old else value for old, value in zip(legacy, dirty,
                                                                            strict=True)],
                              rows.index, object)
    rows["commit"] = commits.astype(str).str.removesuffix("+uncommitted").where(recorded,
                                                                                 UNKNOWN)
    return rows


def _dirty_rows(rows: pd.DataFrame) -> np.ndarray:
    if "dirty" not in rows:
        return np.zeros(len(rows), dtype=bool)
    return np.array([_dirty(value) is True for value in rows["dirty"]], dtype=bool)


def _rows(n: int) -> str:
    return f"{n} row" + ("" if n == 1 else "s")


def provenance(rows: pd.DataFrame, by: str, marked: bool = False) -> str:
    """Header lines naming every commit the rows come from and flagging dirty rows.

    Parameters
    ----------
    rows : DataFrame
        Result rows with ``commit`` and ``dirty`` columns (:func:`stamped`,
        :func:`kept`); without them every row counts as of an unknown commit.
    by : str
        The column that says which rows were made with uncommitted changes
        (for example ``detector`` or ``section``).
    marked : bool, default=False
        Whether the tables mark those rows' columns (:func:`mark_dirty`).

    Returns
    -------
    str
        A "rows from commits" list item and, if any row was made from a
        dirty tree, a WARNING item naming those rows.
    """
    commits = (rows["commit"].fillna(UNKNOWN).astype(str).to_numpy() if "commit" in rows
               else np.full(len(rows), UNKNOWN, dtype=object))
    dirty = _dirty_rows(rows)
    labels = pd.Series(np.where(dirty, [f"{c}+uncommitted" for c in commits], commits))
    counts = labels.value_counts(sort=False)
    lines = ["- rows from commits: " + ", ".join(
        f"{commit} ({_rows(n)})" for commit, n in counts.items())]
    if UNKNOWN in counts:
        lines[0] += (f"; {UNKNOWN}: kept from a file written before rows recorded their "
                     "commit (see its git history)")
    if dirty.any():
        groups = pd.Series(1, pd.MultiIndex.from_arrays(
            [rows[by].to_numpy()[dirty], commits[dirty]])).groupby(level=[0, 1],
                                                                   sort=False).size()
        named = ", ".join(f"{name} at {commit} ({n})" for (name, commit), n in groups.items())
        note = f"; marked{DIRTY_MARK} in the tables" if marked else ""
        n = int(dirty.sum())
        lines.append(f"- **WARNING: {_rows(n)} {'was' if n == 1 else 'were'} made with uncommitted "
                     f"changes: {named}; they are not reproducible from their commit{note}**")
    return "\n".join(lines) + "\n"


def mark_dirty(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """``rows`` with :data:`DIRTY_MARK` after each value of ``column`` that has a dirty row."""
    marked = set(rows[column].to_numpy()[_dirty_rows(rows)])
    return rows.assign(**{column: [f"{v}{DIRTY_MARK}" if v in marked else v
                                   for v in rows[column]]})


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_line(module: str, argv=None) -> str:
    """The command that ran ``benchmarks.<module>``, for :func:`header`."""
    return f"python -m benchmarks.{module} " + " ".join(sys.argv[1:] if argv is None else argv)


def header(title: str, command: str) -> str:
    """Run metadata: versions, commit, machine, date and the command.

    The commit is the code that runs now; the commits of the rows a result
    file holds (some kept from earlier runs) are listed by :func:`provenance`.
    """
    versions = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    return "\n".join(
        [
            f"# {title}",
            "",
            f"- generated: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by `{command}`",
            f"- commit of this run: {commit_label()}",
            f"- libraries: {versions}, Python {platform.python_version()}",
            f"- machine: {os.cpu_count()} cores, {_cpu()}",
            f"- thread variables: {_thread_variables()}",
            "",
        ]
    )


def _thread_variables() -> str:
    """The environment's OpenMP/MKL thread limits (which set torch's default threads)."""
    names = ["OMP_NUM_THREADS", "MKL_NUM_THREADS"]
    found = [f"{name}={os.environ[name]}" for name in names if name in os.environ]
    return ", ".join(found) or "none set"


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.1f}") -> str:
    """A pipe table of ``frame`` with its index as the first column."""
    columns = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for index, row in frame.iterrows():
        cells = [str(index)] + [
            "" if pd.isna(v) else (float_format.format(v) if isinstance(v, float) else str(v))
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def auroc_summary(results: pd.DataFrame, *, spread: bool = False,
                  median_fit: bool = False) -> pd.DataFrame:
    """Per detector, over the data sets (seeds averaged): the mean AUROC (x100) and
    the average rank; with ``spread`` the mean max-min AUROC across seeds (x100),
    with ``median_fit`` the median fit time (s). The summary every study shows."""
    table = results.pivot_table(index="dataset", columns="detector", values="auroc") * 100
    summary = pd.DataFrame({"mean AUROC (x100)": table.mean(),
                            "average rank": table.rank(axis=1, ascending=False).mean()})
    if spread:
        per_seed = results.pivot_table(index=["dataset", "detector"], columns="seed",
                                       values="auroc") * 100
        summary["mean seed spread (x100)"] = (
            per_seed.max(axis=1) - per_seed.min(axis=1)).groupby(level="detector").mean()
    if median_fit:
        summary["median fit (s)"] = results.groupby("detector")["fit_s"].median()
    return summary


def quality_tables(results: pd.DataFrame) -> str:
    """Per-dataset means over seeds (AUROC, AP, inlier rate), mean and rank rows.

    A detector with rows made from a dirty tree is marked (:func:`mark_dirty`).
    """
    results = mark_dirty(results, "detector")
    parts = []
    for metric, label in [("auroc", "AUROC (x100)"), ("ap", "Average precision (x100)")]:
        table = results.pivot_table(index="dataset", columns="detector", values=metric) * 100
        ranks = table.rank(axis=1, ascending=False).mean()
        table.loc["**mean**"] = table.mean()
        table.loc["**average rank**"] = ranks
        parts += [f"## {label}, mean over seeds", "", markdown_table(table), ""]
    spread = results.pivot_table(index="dataset", columns="detector", values="auroc",
                                 aggfunc=lambda s: s.max() - s.min()) * 100
    spread.loc["**mean**"] = spread.mean()
    parts += ["## AUROC spread across seeds (max - min, x100)", "", markdown_table(spread), ""]
    inliers = results.dropna(subset=["inlier_rate"])
    if not inliers.empty:
        rate = inliers.pivot_table(index="dataset", columns="detector", values="inlier_rate") * 100
        rate.loc["**mean**"] = rate.mean()
        parts += [
            "## Test normals predicted inlier by the default threshold (%)",
            "",
            markdown_table(rate),
            "",
        ]
    fit = results.pivot_table(index="dataset", columns="detector", values="fit_s")
    fit.loc["**mean**"] = fit.mean()
    parts += ["## Fit time (s), mean over seeds", "", markdown_table(fit, "{:.2f}"), ""]
    return "\n".join(parts)


def write_study(results: pd.DataFrame, out_dir: Path, name: str, header: str, seeds,
                summary: str) -> None:
    """``<name>.csv`` and ``<name>.md`` of a study on the ADBench splits of ``seeds``.

    The page is ``header``, the rows' provenance, the protocol, ``summary``
    and the per-data-set tables of :func:`quality_tables`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.6g")
    listed = ", ".join(str(s) for s in seeds)
    (out_dir / f"{name}.md").write_text(
        header + provenance(results, "detector", marked=True)
        + f"\nProtocol: `benchmarks/adbench.py` (one-class, seeds {listed}).\n\n"
        + summary + quality_tables(results))
