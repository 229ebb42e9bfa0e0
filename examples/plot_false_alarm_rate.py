"""Requested against observed false-alarm rates of the conformal thresholds.

Every detector is fitted with its defaults on normal rows of the fraud-like
table; its validation split is its calibration set. For requested rates
from 0.5% to 20%, ``set_false_alarm_rate`` moves the threshold (no
retraining) and the share of fresh normal rows that ``predict`` flags is
plotted against the request. For normal rows exchangeable with the
calibration rows the observed rate stays at or just below the diagonal; the
dashed line shows what drift does: the same normal rows with every amount
doubled, which the thresholds were not calibrated on. The data are synthetic
(:func:`sklearn_flowod.datasets.make_fraud_like`).

Run ``python examples/plot_false_alarm_rate.py`` to rewrite
``docs/figures/false_alarm_rate.png``; ``--quick`` uses tiny networks and a
few hundred rows (a smoke test of the code, not a useful figure).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn_flowod import (  # noqa: E402
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.datasets import make_fraud_like  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
RATES = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2])
AMOUNT = 10  # the column of the amount in make_fraud_like


def observed_rates(detector, X: np.ndarray, rates=RATES) -> np.ndarray:
    """The share of rows ``X`` that ``predict`` flags at every requested rate."""
    return np.array([np.mean(detector.set_false_alarm_rate(rate).predict(X) == -1)
                     for rate in rates])


def main(quick: bool = False, out_dir: Path = FIGURES) -> Path:
    """Fit every detector, sweep the rate, plot observed against requested; return the PNG."""
    X, y = make_fraud_like(3_000 if quick else 40_000, random_state=0)
    X = X[y == 0]
    X[:, AMOUNT] = np.log(X[:, AMOUNT])
    half = len(X) // 2
    train, fresh = X[:half], X[half:]
    drifted = fresh.copy()
    drifted[:, AMOUNT] += np.log(4.0)  # every amount four times as large
    params = {"max_epochs": 3} if quick else {}
    detectors = [cls(random_state=0, **params) for cls in (
        ContrastiveFlowDetector, FlowDetector, LikelihoodRatioDetector,
        InvertibleOneClassDetector, DeepSVDDDetector)]
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    ax.plot(RATES * 100, RATES * 100, color="0.6", lw=1.0, ls=":", label="requested")
    colours = ["#1f5fa0", "#d9822b", "#3a9a5b", "#8e5ea2", "#b8413c"]
    for detector, colour in zip(detectors, colours, strict=True):
        detector.fit(train)
        ax.plot(RATES * 100, observed_rates(detector, fresh) * 100, marker="o", ms=3,
                color=colour, label=f"{type(detector).__name__} "
                f"({len(detector.calibration_scores_)} calibration rows)")
    ax.plot(RATES * 100, observed_rates(detectors[0], drifted) * 100, color=colours[0],
            ls="--", label="ContrastiveFlowDetector, amounts x 4 (drift)")
    ax.set_xlabel("requested false-alarm rate (%)")
    ax.set_ylabel("normal rows flagged (%)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("set_false_alarm_rate on fresh normal rows of the fraud-like table",
                 fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "false_alarm_rate.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cli(argv: list[str] | None = None) -> None:
    """Command-line entry: ``--quick`` for tiny budgets, ``--out-dir`` for the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--out-dir", type=Path, default=FIGURES, help="where to write the PNG")
    args = parser.parse_args(argv)
    print(main(quick=args.quick, out_dir=args.out_dir))


if __name__ == "__main__":
    cli()
