"""Every script in examples/ runs with --quick (tiny budgets) and writes what it promises."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))


def load(path: Path, monkeypatch):
    """Import a script as a module (registered, so that pickle finds its functions)."""
    name = f"example_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_runs_quick(path, tmp_path, monkeypatch):
    if path.stem.startswith("plot_"):
        pytest.importorskip("matplotlib", reason="the figure scripts need the bench extra")
    module = load(path, monkeypatch)
    module.cli(["--quick", "--out-dir", str(tmp_path)])
    written = sorted(p.name for p in tmp_path.iterdir())
    if path.stem.startswith("plot_"):
        # one figure, of the name the documentation shows (committed in docs/figures)
        assert len(written) == 1 and written[0].endswith(".png")
        assert (ROOT / "docs" / "figures" / written[0]).exists()
    else:
        assert written, f"{path.name} wrote nothing to --out-dir"


def test_every_example_has_the_command_line_entry():
    assert SCRIPTS
    for path in SCRIPTS:
        text = path.read_text()
        assert "def main(quick: bool" in text and "--quick" in text, path.name
        assert 'if __name__ == "__main__":' in text, path.name


def test_the_density_figure_draws_densities(tmp_path, monkeypatch):
    # the curves of the two flows are exp(log_density): each integrates to about 1
    # (exp(score_samples) does not: the default score adds neighbour distances)
    plt = pytest.importorskip("matplotlib.pyplot")
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    module = load(ROOT / "examples" / "plot_contrastive_1d.py", monkeypatch)
    module.main(quick=True, out_dir=tmp_path)
    curves = {line.get_label(): line.get_data() for line in drawn[0].axes[0].get_lines()}
    for name in ("ContrastiveFlowDetector", "FlowDetector"):
        x, density = curves[name]
        assert abs(np.trapezoid(density, x) - 1.0) < 0.05, name
