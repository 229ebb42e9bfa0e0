"""Decision boundary of the invertible one-class network on two 2-D data sets.

The network (12 coupling blocks of width 128) maps the training data onto
the cube [-1, 1]^2. With
``contamination="auto"`` a point is an inlier exactly when its code lies
inside the cube, so the line ``decision_function(x) = 0`` is the cube's
surface mapped back into the input space through the inverse network.

Run ``python examples/plot_one_class_boundary.py`` to rewrite
``docs/figures/one_class_boundary.png``; ``--quick`` trains for two epochs
and draws a coarse grid (a smoke test of the code, not a useful figure).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_blobs, make_moons  # noqa: E402

from sklearn_flowod import InvertibleOneClassDetector  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def datasets(n_samples: int) -> dict[str, np.ndarray]:
    """The two training sets: two moons and two Gaussian blobs."""
    moons, _ = make_moons(n_samples, noise=0.05, random_state=0)
    blobs, _ = make_blobs(
        n_samples, centers=[[-1.5, 0.0], [1.5, 0.0]], cluster_std=0.5, random_state=0
    )
    return {"two moons": moons, "two Gaussian blobs": blobs}


def main(quick: bool = False, out_dir: Path = FIGURES) -> Path:
    """Fit one detector per data set and draw its boundary; return the PNG's path."""
    if quick:
        n_samples, grid_size, budget = 200, 40, {"n_blocks": 2, "hidden_size": 16, "max_epochs": 2}
    else:  # the architecture of the paper's appendix A.5, the default training length
        n_samples, grid_size, budget = 1000, 300, {"n_blocks": 12, "hidden_size": 128}
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.0))
    for ax, (name, X) in zip(axes, datasets(n_samples).items(), strict=True):
        det = InvertibleOneClassDetector(**budget, device="cpu", random_state=0).fit(X)
        low, high = X.min(axis=0) - 1.0, X.max(axis=0) + 1.0
        xx, yy = np.meshgrid(
            np.linspace(low[0], high[0], grid_size), np.linspace(low[1], high[1], grid_size)
        )
        decision = det.decision_function(np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
        ax.contourf(xx, yy, decision, levels=[0.0, np.inf], colors=["#a9cce8"])
        ax.contour(xx, yy, decision, levels=[0.0], colors=["#1f5fa0"], linewidths=2.0)
        ax.scatter(X[:, 0], X[:, 1], s=3, c="#333333", alpha=0.6)
        ax.set_title(f"{name}: decision_function = 0")
        ax.set_aspect("equal")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "one_class_boundary.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cli(argv: list[str] | None = None) -> None:
    """Command-line entry: ``--quick`` for tiny budgets, ``--out-dir`` for the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--out-dir", type=Path, default=FIGURES, help="where to write the PNG")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small networks train fastest on one thread
    print(main(quick=args.quick, out_dir=args.out_dir))


if __name__ == "__main__":
    cli()
