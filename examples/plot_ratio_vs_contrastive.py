"""Likelihood ratio against contrastive flow on two 2-D Gaussians.

Inliers come from N([1, 1], I), auxiliary data from N(0, I). The
likelihood-ratio detector scores ``log p_in(x) - log p_g(x)``, whose analytic
value here is ``x1 + x2 - 1``: it keeps growing towards the upper right, far
from both samples. The contrastive flow learns the normalised positive
difference (p - q)+, a density that is largest near the inliers and vanishes
far from them. The panels show the samples and ``exp(score_samples)`` of
both detectors on the same grid, each fitted with ``n_neighbors=None`` so
that the score is the method's own (the ratio ``p_in / p_g`` and the
density); by default both add nearest-neighbour distances to it.

Run ``python examples/plot_ratio_vs_contrastive.py`` to rewrite
``docs/figures/ratio_vs_contrastive.png``; ``--quick`` trains for two epochs
on a few hundred rows (a smoke test of the code, not a useful figure).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sklearn_flowod import ContrastiveFlowDetector, LikelihoodRatioDetector  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
LIMITS = (-4.5, 5.5)  # symmetric about the midpoint of the two centres


def main(quick: bool = False, out_dir: Path = FIGURES) -> Path:
    """Fit both detectors, draw exp(score) on a grid; return the PNG's path."""
    n_samples, ratio_epochs, contrastive_epochs, grid_size = (
        (300, 2, 2, 30) if quick else (2000, 30, 60, 201)
    )
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n_samples, 2)) + 1.0
    X_aux = rng.normal(size=(n_samples + 1, 2))
    budget = {"n_blocks": 4, "hidden_size": 32, "validation_fraction": None, "device": "cpu",
              "random_state": 0, "n_neighbors": None}
    ratio = LikelihoodRatioDetector(max_epochs=ratio_epochs, **budget).fit(X, X_aux=X_aux)
    contrastive = ContrastiveFlowDetector(max_epochs=contrastive_epochs, **budget)
    contrastive.fit(X, X_aux=X_aux)

    axis = np.linspace(*LIMITS, grid_size)
    xx, yy = np.meshgrid(axis, axis)
    grid = np.c_[xx.ravel(), yy.ravel()]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.9))
    shown = rng.permutation(n_samples)[:500]
    axes[0].scatter(*X_aux[shown].T, s=4, c="#d9822b", alpha=0.6, label="auxiliary N(0, I)")
    axes[0].scatter(*X[shown].T, s=4, c="#1f5fa0", alpha=0.6, label="inliers N([1, 1], I)")
    axes[0].legend(fontsize=8, loc="lower right", markerscale=3)
    axes[0].set_title("samples", fontsize=9)
    panels = [(axes[1], ratio, "LikelihoodRatioDetector"),
              (axes[2], contrastive, "ContrastiveFlowDetector")]
    for ax, det, name in panels:
        scores = det.score_samples(grid)
        image = ax.pcolormesh(xx, yy, np.exp(scores).reshape(xx.shape), cmap="viridis",
                              shading="auto")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        peak = grid[np.argmax(scores)]
        ax.plot(*peak, marker="x", color="red", ms=9, mew=2, label="highest score")
        ax.plot(1.0, 1.0, marker="+", color="white", ms=9, mew=2, label="inliers' mean")
        ax.legend(fontsize=7, loc="lower left")
        ax.set_title(f"exp(score_samples): {name}", fontsize=9)
    for ax in axes:
        ax.set_xlim(*LIMITS)
        ax.set_ylim(*LIMITS)
        ax.set_aspect("equal")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "ratio_vs_contrastive.png"
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
