"""How much AUROC the held-out stopping leaves to training length, per detector.

Usage (from the project root)::

    python -m benchmarks.training_length InvertibleOneClassDetector FlowDetector \\
        --epochs 50 --name training_length

On every split of ``adbench.py`` each detector is trained with its defaults
but a fixed budget (``max_epochs=--epochs``, ``n_iter_no_change=None``). After
every epoch a probe scores the test rows with the network as it stands: the
detector's own score (after its post-training step, e.g. the one-class net's
calibration on the held-out rows) and the two neighbour distances of
:mod:`sklearn_flowod.neighbours`, standardised on the reference rows as a
fitted detector does. It records the held-out criterion the detector stops on
and the test AUROC. From one curve come the AUROC of four rules of choosing
the epoch, one row each:

- ``early stopping``: the epoch the package's
  :class:`~sklearn_flowod.callbacks.EarlyStopping`, with the defaults'
  ``n_iter_no_change`` and ``tol``, keeps from the epoch-end checks (a default
  fit also checks within long epochs);
- ``criterion minimum``: the best held-out criterion over the whole budget;
- ``last epoch``: the fixed budget;
- ``best epoch in hindsight``: the epoch with the highest test AUROC, which
  uses the test labels and is no method, only the ceiling of choosing the
  training length.

The probe keeps at most ``MAX_PROBE_ROWS`` reference and test rows (a random
subset; a fitted detector keeps up to 10,000 reference rows), so its AUROC is
close to, not equal to, ``quality.py``'s. ``<name>.csv`` holds one row per
data set, seed, detector and rule (its epoch, AUROC, and the fit time of the
whole budget); ``<name>.md`` the summary and the per-data-set tables.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

import sklearn_flowod
from sklearn_flowod.callbacks import Callback, EarlyStopping
from sklearn_flowod.neighbours import NeighbourScore

from . import adbench, quality, report

#: Reference and test rows the probe scores after every epoch (a random subset beyond).
MAX_PROBE_ROWS = 5_000

RULES = ["early stopping", "criterion minimum", "last epoch", "best epoch in hindsight"]


class EpochProbe(Callback):
    """After every epoch: the held-out criterion, the test scores of the network, and
    the epoch the detector's own early stopping (its ``n_iter_no_change`` and ``tol``
    defaults, replayed on the epoch-end checks) would have kept."""

    def __init__(self, detector, reference, X_test, X_train, X_val, stopping: EarlyStopping):
        self.detector, self.reference, self.X_test = detector, reference, X_test
        self.X_train, self.X_val = X_train, X_val
        self.stopping, self.stopped_at = stopping, None
        self.criterion, self.scores = [], []

    def on_train_begin(self, state) -> None:
        self.stopping.on_train_begin(state)

    def on_check(self, state) -> None:
        if not state.epoch_ended:
            return
        module, detector = state.module, self.detector
        module.eval()
        with torch.no_grad():
            detector._after_training(module, self.X_train, self.X_val)
            self.scores.append(self._scores(module).numpy())
        module.train()
        self.criterion.append(state.validation_loss)
        # the replay sets ``state.history.best_epoch`` as in a default fit; it only
        # records where that fit would have stopped (1-based), training goes on
        if self.stopped_at is None and self.stopping.on_check(state):
            self.stopped_at = state.history.best_epoch

    def on_train_end(self, state) -> None:
        if self.stopped_at is None:  # never stopped within the budget: its best check
            self.stopped_at = state.history.best_epoch

    def _scores(self, module) -> torch.Tensor:
        """The detector's default score of the test rows with the network as it stands."""
        detector = self.detector
        if detector.n_neighbors is None:
            return detector._anomaly_score(module, self.X_test)
        # the package's neighbour score, fitted on the probe's reference rows (model space)
        def apply(rows, fn):
            return fn(module, torch.as_tensor(rows)).numpy()

        neighbours, _ = NeighbourScore.fit(
            self.reference.numpy(), detector.n_neighbors, seed=0, to_model=torch.as_tensor,
            apply=apply, scored_codes=detector._scored_codes, owner=type(detector).__name__)
        return neighbours.score_batch(detector._scored_codes)(module, self.X_test)


def _probed(cls):
    """``cls`` whose training also runs an :class:`EpochProbe` (kept in ``probe_``)."""

    class Probed(cls):
        def _train(self, module, loss, X_train, X_val, generator, **options):
            reference, X_test = (self._to_model_input(rows, torch.float32)
                                 for rows in self._probe_rows)
            defaults = type(self)()
            probe = EpochProbe(self, reference, X_test, X_train, X_val,
                               EarlyStopping(defaults.n_iter_no_change, defaults.tol))
            self.probe_ = probe
            options["callbacks"] = [probe, *options["callbacks"]]
            return super()._train(module, loss, X_train, X_val, generator, **options)

    Probed.__name__ = cls.__name__
    return Probed


def _subset(X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    keep = np.arange(X.shape[0])
    if keep.size > MAX_PROBE_ROWS:
        keep = np.sort(rng.choice(keep, MAX_PROBE_ROWS, replace=False))
    return keep


def curve_rows(name: str, split: adbench.Split, epochs: int) -> list[dict]:
    """One row per rule for detector ``name`` on ``split``."""
    cls = getattr(sklearn_flowod, name)
    detector = _probed(cls)(random_state=split.seed, max_epochs=epochs, n_iter_no_change=None)
    rng = np.random.RandomState(split.seed)
    reference = split.X_train[_subset(split.X_train, rng)]
    test = _subset(split.X_test, rng)
    detector._probe_rows = (reference, split.X_test[test])
    start = time.perf_counter()
    detector.fit(split.X_train)
    fit_s = time.perf_counter() - start
    probe, y = detector.probe_, split.y_test[test]
    auroc = np.array([roc_auc_score(y, s) for s in probe.scores])
    chosen = {
        "early stopping": probe.stopped_at - 1,
        "criterion minimum": int(np.argmin(probe.criterion)),
        "last epoch": len(probe.scores) - 1,
        "best epoch in hindsight": int(np.argmax(auroc)),
    }
    return [{"dataset": split.dataset, "detector": f"{name}, {rule}", "rule": rule,
             "seed": split.seed, "epoch": epoch + 1, "auroc": auroc[epoch],
             "ap": average_precision_score(y, probe.scores[epoch]),
             "inlier_rate": np.nan, "fit_s": fit_s} for rule, epoch in chosen.items()]


def _summary(results: pd.DataFrame, epochs: int) -> str:
    summary = report.auroc_summary(results)
    summary["median epoch"] = results.groupby("detector")["epoch"].median()
    summary.index.name = "detector, rule"
    return (f"Every fit trains {epochs} epochs; the fit times below are of the whole budget. "
            "`best epoch in hindsight` reads the test labels: a ceiling, not a method.\n\n"
            "## Summary\n\n" + report.markdown_table(summary, "{:.2f}") + "\n")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detectors", nargs="*", help="detector classes of sklearn_flowod")
    parser.add_argument("--epochs", type=int, default=50, help="the fixed training budget")
    adbench.add_split_arguments(parser)
    parser.add_argument("--include", nargs="+", default=[],
                        help="stems of earlier result files in --out-dir to combine")
    parser.add_argument("--name", required=True, help="stem of the result files")
    parser.add_argument("--out-dir", type=Path, default=quality.RESULTS_DIR)
    args = parser.parse_args(argv)
    command = report.command_line("training_length", argv)
    header = report.header("Training length left to the held-out stopping", command)
    kept = [pd.read_csv(args.out_dir / f"{stem}.csv") for stem in args.include]

    def write(rows: list[dict]) -> pd.DataFrame:
        results = pd.concat([*kept, report.stamped(pd.DataFrame(rows))], ignore_index=True)
        report.write_study(results, args.out_dir, args.name, header, args.seeds,
                           _summary(results, args.epochs))
        return results

    rows: list[dict] = []
    for split in adbench.splits(args.datasets, args.seeds, args.data_dir) if args.detectors else []:
        for name in args.detectors:
            rows += curve_rows(name, split, args.epochs)
            print(f"{split.dataset:<24}seed {split.seed}  {name}: "
                  + " ".join(f"{r['rule']} {r['auroc']:.3f}@{r['epoch']}"
                             for r in rows[-len(RULES):]), flush=True)
        write(rows)  # after every split: a stopped run keeps its rows
    return write(rows)


if __name__ == "__main__":
    main()
