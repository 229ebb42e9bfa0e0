"""Markdown tables and run metadata for the benchmark result files."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata

import pandas as pd

LIBRARIES = ["sklearn-flowod", "torch", "FrEIA", "scikit-learn", "numpy", "pyod"]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
        return out.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(title: str, command: str) -> str:
    """Run metadata: versions, commit, machine, date and the command."""
    versions = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    return "\n".join(
        [
            f"# {title}",
            "",
            f"- generated: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by `{command}`",
            f"- commit: {_commit()}",
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


def quality_tables(results: pd.DataFrame) -> str:
    """Per-dataset means over seeds (AUROC, AP, inlier rate), mean and rank rows."""
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
