"""Every figure of the documentation's examples, drawn by the current code.

Usage (from the project root, with the ``bench`` extra installed)::

    python -m benchmarks.figures                       # every examples/plot_*.py
    python -m benchmarks.figures --only loss_curves    # one of them

Runs each example script's command line (as ``python examples/plot_<name>.py``
would), which writes ``docs/figures/<figure>.png``, and records in the PNG the
commit of this run (:func:`benchmarks.page_state.stamp_png`); the
documentation build compares it with the package code and labels a figure
that an earlier version of the package drew. ``docs/figures/speed_fit_time.png``
is drawn, and stamped, by ``python -m benchmarks.speed`` (its fit-time rows).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
from pathlib import Path

from . import page_state, report

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def scripts(only: list[str] | None = None) -> list[Path]:
    """The example scripts that draw a figure (``plot_*.py``), or those named."""
    found = sorted(EXAMPLES.glob("plot_*.py"))
    if only:
        found = [path for path in found if path.stem.removeprefix("plot_") in only]
    return found


def draw(script: Path, commit: str, out_dir: Path | None = None, quick: bool = False) -> Path:
    """Run one example script's command line; stamp the figure it wrote with ``commit``
    and return its path."""
    name = f"example_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling the script's functions finds them
    spec.loader.exec_module(module)
    args = ["--quick"] * quick + (["--out-dir", str(out_dir)] if out_dir else [])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the script prints the figure's path
        module.cli(args)
    figure = Path(printed.getvalue().split()[-1])
    page_state.stamp_png(figure, commit)
    return figure


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="figure scripts by name, without plot_")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to write the figures (default: docs/figures)")
    args = parser.parse_args(argv)
    commit = report.commit_label()  # before the first figure changes the tree
    drawn = [draw(script, commit, args.out_dir, args.quick) for script in scripts(args.only)]
    for path in drawn:
        print(path)
    return drawn


if __name__ == "__main__":
    main()
