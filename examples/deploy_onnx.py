"""Deploying a detector: a whole pipeline exported to ONNX and scored by onnxruntime.

A transaction table of amounts, an hour and a merchant category goes
through a ``ColumnTransformer`` (scaled numbers, one-hot category) into a
``ContrastiveFlowDetector``. ``skl2onnx.to_onnx`` converts the fitted
pipeline, preprocessing included, once ``sklearn_flowod.onnx`` has
registered the detectors' converters. The file is then scored with
onnxruntime alone, as a payment service in any language would, and
compared with the pipeline's own ``decision_function``.

Run ``python examples/deploy_onnx.py --out-dir models`` to write
``models/fraud_detector.onnx`` (needs the ``onnx`` extra); ``--quick`` uses
a small table and a short training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skl2onnx
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import sklearn_flowod.onnx  # noqa: F401  (registers the detectors' converters)
from sklearn_flowod import ContrastiveFlowDetector


def transactions(n_rows: int, seed: int = 0) -> np.ndarray:
    """Amount, log-amount of the last week, hour of day, merchant category (0-5)."""
    rng = np.random.RandomState(seed)
    amount = rng.lognormal(3.5, 1.0, n_rows)
    weekly = np.log(amount) + rng.normal(0.0, 0.5, n_rows)
    hour = rng.randint(0, 24, n_rows)
    category = rng.choice(6, n_rows, p=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    return np.column_stack([amount, weekly, hour, category]).astype(np.float32)


def main(quick: bool = False, out_dir: Path | None = None) -> Path | None:
    """Fit, export, score with onnxruntime and compare; return the file's path."""
    X = transactions(2_000 if quick else 50_000)
    X_new = transactions(1_000, seed=1)
    X_new[:10, 0] *= 20.0  # ten unusually large amounts
    pipeline = make_pipeline(
        ColumnTransformer([("numbers", StandardScaler(), [0, 1, 2]),
                           ("category", OneHotEncoder(sparse_output=False), [3])]),
        ContrastiveFlowDetector(max_epochs=3 if quick else "auto", random_state=0))
    pipeline.fit(X)

    model = skl2onnx.to_onnx(pipeline, X[:1])  # float32 input, as skl2onnx expects
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    label, scores = session.run(None, {session.get_inputs()[0].name: X_new})
    expected = pipeline.decision_function(X_new)
    normal = np.median(np.abs(expected))  # the scale of a normal row's score
    difference = np.abs(scores[:, 0] - expected) / np.maximum(np.abs(expected), normal)
    print(f"largest relative difference to decision_function: {difference.max():.1e}")
    print(f"labels equal to predict: {np.mean(label[:, 0] == pipeline.predict(X_new)):.4f}; "
          f"flagged among the ten large amounts: {np.sum(label[:10, 0] == -1)}")
    if out_dir is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fraud_detector.onnx"
    path.write_bytes(model.SerializeToString())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return path


def cli(argv: list[str] | None = None) -> None:
    """Command-line entry: ``--quick`` for a small table, ``--out-dir`` for the file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small table, short training")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to write fraud_detector.onnx (default: nowhere)")
    args = parser.parse_args(argv)
    main(quick=args.quick, out_dir=args.out_dir)


if __name__ == "__main__":
    cli()
