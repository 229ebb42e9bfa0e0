"""The contrastive flow learns the normalised positive difference (p - q)+ in 1-D.

Inliers come from p = N(0, 1), auxiliary data from q = N(1, 2) (variance 2).
The contrastive flow raises the likelihood of the inliers and lowers that of
the auxiliary samples; its density ``exp(log_density(x))`` approaches the
analytic target ``(p - q)+ / integral (p - q)+``, which is zero wherever q
exceeds p. A plain maximum-likelihood flow on the same inliers learns p
itself. (``score_samples`` is not a density: by default it adds
nearest-neighbour distances to the log-density.)

Run ``python examples/plot_contrastive_1d.py`` to rewrite
``docs/figures/contrastive_1d.png``; ``--quick`` trains for two epochs on
a few hundred rows (a smoke test of the code, not a useful figure).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import norm  # noqa: E402

from sklearn_flowod import ContrastiveFlowDetector, FlowDetector  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
Q_MEAN, Q_STD = 1.0, math.sqrt(2.0)


def positive_difference(grid: np.ndarray) -> np.ndarray:
    """The analytic target: (p - q)+ normalised to integrate to 1 over ``grid``."""
    diff = np.clip(norm.pdf(grid) - norm.pdf(grid, Q_MEAN, Q_STD), 0.0, None)
    return diff / (diff.sum() * (grid[1] - grid[0]))


def main(quick: bool = False, out_dir: Path = FIGURES) -> Path:
    """Fit both flows, plot their densities against the target; return the PNG's path."""
    n_samples, max_epochs = (300, 2) if quick else (4000, 60)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n_samples, 1))
    X_aux = rng.normal(Q_MEAN, Q_STD, size=(n_samples + 1, 1))
    budget = {"max_epochs": max_epochs, "learning_rate": 3e-3, "validation_fraction": None,
              "device": "cpu", "random_state": 0}
    contrastive = ContrastiveFlowDetector(**budget).fit(X, X_aux=X_aux)
    plain = FlowDetector(**budget).fit(X)

    grid = np.linspace(-5.0, 6.0, 551)
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    ax.plot(grid, norm.pdf(grid), color="0.6", lw=1.0, ls=":", label="p = N(0, 1) (inliers)")
    ax.plot(grid, norm.pdf(grid, Q_MEAN, Q_STD), color="0.6", lw=1.0, ls="-.",
            label="q = N(1, 2) (auxiliary)")
    ax.plot(grid, positive_difference(grid), color="black", lw=2.0, ls="--",
            label="normalised (p - q)+ (analytic)")
    ax.plot(grid, np.exp(contrastive.log_density(grid[:, None])), color="#1f5fa0", lw=2.0,
            label="ContrastiveFlowDetector")
    ax.plot(grid, np.exp(plain.log_density(grid[:, None])), color="#d9822b", lw=1.5,
            label="FlowDetector")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "contrastive_1d.png"
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
