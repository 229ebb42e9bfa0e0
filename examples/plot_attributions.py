"""Why is this transaction flagged? Per-feature attributions on the fraud-like table.

A ``ContrastiveFlowDetector`` in a ``Pipeline`` (the amount on a log scale,
the other columns as they are) is fitted on normal transactions; its
threshold is set to a 1% false-alarm rate on its held-out rows
(``set_false_alarm_rate``), with no retraining. For the flagged
transactions of a test set, ``explain`` says how much of each row's anomaly
score each column explains: how far the log-density rises when that column
alone moves to its most typical value given the others. The log transform
acts on one column, so the attributions are those of the input columns and
keep their names. The data are synthetic
(:func:`sklearn_flowod.datasets.make_fraud_like`).

Run ``python examples/plot_attributions.py`` to rewrite
``docs/figures/attributions.png``; ``--quick`` uses a tiny network and a few
hundred rows (a smoke test of the code, not a useful figure).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from sklearn_flowod import ContrastiveFlowDetector  # noqa: E402
from sklearn_flowod.datasets import make_fraud_like  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
COLUMNS = [f"component_{i}" for i in range(10)] + ["amount", "hour", "card_present", "foreign"]


def pipeline(quick: bool):
    """Log of the amount, the rest as it is, then the detector; pandas all the way."""
    scale = ColumnTransformer([("log", FunctionTransformer(np.log), ["amount"])],
                              remainder="passthrough", verbose_feature_names_out=False)
    params = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 3} if quick else {}
    detector = ContrastiveFlowDetector(random_state=0, **params)
    return make_pipeline(scale, detector).set_output(transform="pandas")


def main(quick: bool = False, out_dir: Path = FIGURES) -> Path:
    """Fit, threshold at 1% false alarms, explain the flagged frauds; return the PNG's path."""
    # the quick run's few calibration rows allow no p-value as small as 1%
    n_samples, rate = (2_000, 0.1) if quick else (40_000, 0.01)
    X, y = make_fraud_like(n_samples, fraud_fraction=0.05 if quick else 0.01, random_state=0)
    table = pd.DataFrame(X, columns=COLUMNS)
    train = (y == 0) & (np.arange(len(y)) % 2 == 0)  # half the normal rows
    test = ~train
    pipe = pipeline(quick).fit(table[train])
    detector, before = pipe[-1], pipe[:-1]
    detector.set_false_alarm_rate(rate)
    flagged = test & (pipe.predict(table) == -1)
    print(f"flagged {flagged.sum()} of {test.sum()} test rows: "
          f"{(flagged & (y == 1)).sum()} of {(test & (y == 1)).sum()} frauds, "
          f"{(flagged & (y == 0)).sum() / (test & (y == 0)).sum():.2%} of the normal rows")
    attributions = detector.explain(before.transform(table[flagged & (y == 1)]))
    attributions = attributions[COLUMNS]  # the input's order (the log column came first)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.6), sharey=True)
    mean = attributions.mean()
    left.barh(COLUMNS, mean.to_numpy(), color="#1f5fa0")
    left.set_title(f"mean over the {len(attributions)} flagged frauds", fontsize=10)
    left.set_xlabel("attribution (anomaly score, nats)")
    top = attributions.sum(axis=1).sort_values(ascending=False).index[:3]
    height = 0.8 / max(len(top), 1)
    for k, (row, colour) in enumerate(zip(top, ["#d9822b", "#3a9a5b", "#8e5ea2"],
                                          strict=False)):
        right.barh(np.arange(len(COLUMNS)) + (k - 1) * height, attributions.loc[row],
                   height=height, color=colour, label=f"transaction {row}")
    right.set_title("the three most anomalous flagged frauds", fontsize=10)
    right.set_xlabel("attribution (anomaly score, nats)")
    right.legend(fontsize=8, frameon=False)
    left.invert_yaxis()
    fig.suptitle("ContrastiveFlowDetector.explain: how much each column explains a row's "
                 "anomaly score", fontsize=11)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "attributions.png"
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
