"""The results summary that the README and "Choosing a detector" show.

Usage (from the project root), after ``benchmarks/results/quality.csv`` is
regenerated::

    python -m benchmarks.summary

Reads the quality rows and writes ``benchmarks/results/quality_summary.md``:
one line per detector (mean AUROC, average rank, mean seed spread, median
fit time, over the data sets and seeds of the file) and a sentence naming the
package detector to start with (the highest mean AUROC) against the best
peer, then the commits the rows come from (the line the docs build reads to
label an out-of-date page, :mod:`benchmarks.page_state`). The same text
replaces the block between the markers :data:`BEGIN` and :data:`END` in
``README.md``, so that no number there is written by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from . import quality, registry, report

BEGIN = "<!-- quality summary: written by python -m benchmarks.summary -->"
END = "<!-- end of the quality summary -->"
README = Path(__file__).resolve().parents[1] / "README.md"
#: What the lead above is worth: the defaults were chosen on these data sets.
TUNED_HERE = ("The package's defaults were chosen on these same data sets, so a lead "
              "measured here is an upper estimate: on other data it can be smaller.")


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per detector: mean AUROC, average rank, mean seed spread, median fit (s)."""
    frame = report.auroc_summary(results, spread=True, median_fit=True).sort_values(
        "mean AUROC (x100)", ascending=False)
    package = set(registry.package_detectors()) | set(registry.package_variants())
    frame.insert(0, "kind", ["package" if d in package else "peer" for d in frame.index])
    frame.index.name = "detector"
    return frame


def summary_text(results: pd.DataFrame) -> str:
    table = summary_table(results)
    ours = table[table["kind"] == "package"]
    peers = table[table["kind"] == "peer"]
    best, peer = ours.index[0], peers.index[0]
    gap = ours.iloc[0]["mean AUROC (x100)"] - peers.iloc[0]["mean AUROC (x100)"]
    ranked = table["average rank"].idxmin()
    n_sets, seeds = results["dataset"].nunique(), sorted(results["seed"].unique())
    return (
        f"Over {n_sets} ADBench data sets and seeds {', '.join(map(str, seeds))} "
        f"(`benchmarks/results/quality.md`), start with **`{best}`**: "
        f"the highest mean AUROC of the package's detectors, "
        f"{ours.iloc[0]['mean AUROC (x100)']:.2f}, {gap:+.2f} against the best peer, "
        f"{peer} ({peers.iloc[0]['mean AUROC (x100)']:.2f}). The best average rank is "
        f"{ranked}'s ({table.loc[ranked, 'average rank']:.2f}). "
        f"{TUNED_HERE}\n\n"
        + report.markdown_table(table, "{:.2f}").rstrip() + "\n\n"
        + report.provenance(results, by="detector"))


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    results = report.kept(pd.read_csv(args.out_dir / "quality.csv"))
    text = summary_text(results)
    (args.out_dir / "quality_summary.md").write_text(text)
    args.readme.write_text(replace_block(args.readme.read_text(), text))
    return text


if __name__ == "__main__":
    main()
