"""Side-by-side A/B of the training-throughput section of two code versions.

Usage (from the project root)::

    python -m benchmarks.ab --old-commit 2c30124 --old A.csv B.csv --new speed.csv

``--old`` takes two or more ``speed.csv`` files of the same (old) commit, run
on the same machine as the new code's ``--new`` file(s), best in the same
session: their spread is the run-to-run noise of each cell. Writes
``benchmarks/results/throughput_ab.csv`` and ``throughput_ab.md``: every
throughput cell of the old and the new runs, the change of the new median
against the old median, the cell's noise (the old runs' range over their
median), and whether a default-path cell (the detector's default batch,
uncompiled) is slower than before by more than that noise. Its rows record
the ``commit`` and ``dirty`` state of the code that compared them; the page
lists the commits of the compared files' rows and warns of any made from a
dirty tree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import registry, report

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CELL = ["detector", "setup", "features"]


def _runs(paths: list[Path], label: str) -> pd.DataFrame:
    frames = []
    for index, path in enumerate(paths, start=1):
        rows = report.kept(pd.read_csv(path))
        rows = rows[rows["section"] == "throughput"][[*CELL, "samples_per_s", "commit",
                                                     "dirty"]]
        frames.append(rows.assign(run=f"{label} {index}"))
    return pd.concat(frames)


def compare(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One row per throughput cell: the runs' rows/s, the change and the noise."""
    wide = pd.concat([old, new]).pivot_table(index=CELL, columns="run",
                                             values="samples_per_s")
    old_runs = [c for c in wide.columns if c.startswith("old")]
    new_runs = [c for c in wide.columns if c.startswith("new")]
    old_median = wide[old_runs].median(axis=1)
    wide["change"] = wide[new_runs].median(axis=1) / old_median - 1.0
    wide["noise"] = (wide[old_runs].max(axis=1) - wide[old_runs].min(axis=1)) / old_median
    defaults = {name: f"batch {entry.make(0).batch_size}"
                for name, entry in registry.package_detectors().items()}
    setups = wide.index.to_frame(index=False)
    wide["default_path"] = [defaults.get(d) == s for d, s in zip(setups["detector"],
                                                                  setups["setup"], strict=True)]
    wide["slower_than_noise"] = wide["default_path"] & (wide["change"] < -wide["noise"])
    return wide.reset_index()


def _page(table: pd.DataFrame, header: str, old_commit: str, measured: pd.DataFrame) -> str:
    shown = table.copy()
    for column in ["change", "noise"]:
        shown[column] = [f"{v:+.1%}" if column == "change" else f"{v:.1%}"
                         for v in shown[column]]
    runs = [c for c in shown.columns if c.startswith(("old", "new"))]
    shown["cell"] = [f"{row.detector}, {row.setup}, d = {int(row.features)}"
                     for row in shown.itertuples()]
    for column in runs:
        shown[column] = [f"{v:,.0f}" for v in shown[column]]
    defaults = table[table["default_path"]]
    text = [
        header + report.provenance(measured, "run"),
        "The rows' commits above are those of the throughput rows of the `--old` and "
        "`--new` files.",
        "",
        f"Old code: commit {old_commit}, its own `python -m benchmarks.speed --sections "
        "throughput`; new code: the commit of the `--new` rows, the same section, on this "
        "machine; when each run was made is in the page beside its CSV. Rows per second of "
        "training "
        "(see `speed.md`); change: the new runs' median over the old runs' median; "
        "noise: the old runs' range over their median. A default-path cell (the "
        "detector's default batch, uncompiled) is marked when it is slower than before "
        "by more than its noise.",
        "",
        f"Default-path cells: {len(defaults)}; slower than their noise: "
        f"{int(defaults['slower_than_noise'].sum())}; median change "
        f"{defaults['change'].median():+.1%}, median noise {defaults['noise'].median():.1%}.",
        "",
        report.markdown_table(shown.set_index("cell")[[*sorted(runs), "change", "noise",
                                                       "default_path", "slower_than_noise"]]),
        "",
    ]
    return "\n".join(text)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", nargs="+", type=Path, required=True)
    parser.add_argument("--new", nargs="+", type=Path, required=True)
    parser.add_argument("--old-commit", required=True)
    parser.add_argument("--name", default="throughput_ab")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.ab " + " ".join(sys.argv[1:] if argv is None else argv)
    header = report.header("Training throughput: old against new code", command)
    old, new = _runs(args.old, "old"), _runs(args.new, "new")
    table = compare(old, new)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report.stamped(table.assign(old_commit=args.old_commit)).to_csv(
        args.out_dir / f"{args.name}.csv", index=False, float_format="%.6g")
    page = _page(table, header, args.old_commit, pd.concat([old, new]))
    (args.out_dir / f"{args.name}.md").write_text(page)
    return table


if __name__ == "__main__":
    main()
