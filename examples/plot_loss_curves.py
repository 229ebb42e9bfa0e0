"""Training and validation loss curves of every detector on the fraud-like table.

Every detector records the mean training loss of each epoch in
``loss_curve_`` and, when ``validation_fraction`` is set, the loss on the
held-out rows in ``validation_loss_curve_``, at every check: after each
epoch and every ``sklearn_flowod.training.VALIDATION_INTERVAL`` optimiser
steps. A callback given through ``callbacks=`` records where, in epochs, each
check fell. Each detector minimises its own objective, so the curves are
comparable across epochs, not across panels.
The data are synthetic (:func:`sklearn_flowod.datasets.make_fraud_like`); the
detectors see the normal rows only.

Run ``python examples/plot_loss_curves.py`` to rewrite
``docs/figures/loss_curves.png``; ``--quick`` trains for two epochs on a few
hundred rows (a smoke test of the code, not a useful figure).
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

from sklearn_flowod import (  # noqa: E402
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.callbacks import Callback  # noqa: E402
from sklearn_flowod.datasets import make_fraud_like  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"

#: What each detector's loss is, for the panel titles.
OBJECTIVES = {
    InvertibleOneClassDetector: "pull/push loss",
    DeepSVDDDetector: "mean squared distance to c",
    FlowDetector: "negative log-likelihood per dimension",
    ContrastiveFlowDetector: "clamped contrastive loss",
    LikelihoodRatioDetector: "NLL per dimension of p_in",
}


class CheckPositions(Callback):
    """Where each validation check of a fit fell, in epochs of training."""

    def on_train_begin(self, state) -> None:
        self.steps_per_epoch = math.ceil(state.X_train.shape[0] / state.config.batch_size)
        self.positions = []

    def on_check(self, state) -> None:
        if state.validation_loss is not None:
            self.positions.append(state.history.n_steps / self.steps_per_epoch)


def detectors(max_epochs: int | str) -> list:
    """One detector of each kind, all holding out 15% of the rows for validation."""
    common = {"validation_fraction": 0.15, "device": "cpu", "random_state": 0}
    svdd_epochs = 100 if max_epochs == "auto" else max_epochs
    kinds = [(InvertibleOneClassDetector, max_epochs), (DeepSVDDDetector, svdd_epochs),
             (FlowDetector, max_epochs), (ContrastiveFlowDetector, max_epochs),
             (LikelihoodRatioDetector, max_epochs)]
    return [cls(max_epochs=epochs, callbacks=[CheckPositions()], **common)
            for cls, epochs in kinds]


def main(quick: bool = False, out_dir: Path = FIGURES) -> Path:
    """Fit every detector on the normal rows and plot its curves; return the PNG's path."""
    n_samples, max_epochs = (400, 2) if quick else (10_000, "auto")
    X, y = make_fraud_like(n_samples, random_state=0)
    X_normal = X[y == 0]
    X_normal[:, 10] = np.log(X_normal[:, 10])  # the amount is log-normal: use its log
    fig, axes = plt.subplots(2, 3, figsize=(12.0, 6.5))
    for ax, det in zip(axes.ravel(), detectors(max_epochs), strict=False):
        det.fit(X_normal)
        epochs = np.arange(1, len(det.loss_curve_) + 1)
        ax.plot(epochs, det.loss_curve_, color="#1f5fa0", label="loss_curve_")
        checks = det.callbacks[0].positions
        ax.plot(checks, det.validation_loss_curve_, color="#d9822b", ls="--",
                label="validation_loss_curve_")
        ax.axvline(det.best_epoch_, color="0.6", lw=1.0, ls=":", label="best_epoch_")
        ax.set_title(f"{type(det).__name__}\n{OBJECTIVES[type(det)]}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, frameon=False)
    axes.ravel()[-1].set_axis_off()
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "loss_curves.png"
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
