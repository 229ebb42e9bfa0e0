"""What every detector built on the FrEIA invertible network shares."""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .._engine.coupling_pass import CouplingPass
from .._engine.folded import scoring_view
from ..base import BaseDeepDetector
from ..callbacks import Callback, CosineSchedule
from ..dequantization import tie_widths
from ..neighbours import NeighbourScore, tukey_fence
from ..networks import build_inn, exact_inverse_permutations
from ..training import TrainingConfig


class BaseINNDetector(BaseDeepDetector):
    """Network parameters and training options of the INN-based detectors.

    Not to be used directly. Subclasses define their loss and score; this
    class turns ``n_blocks``, ``hidden_size``, ``affine_clamping``,
    ``global_affine_init`` and ``soft_permutation`` into the network, and
    ``lr_schedule``, ``max_grad_norm``, ``noise_std`` (in standardised
    units), ``dequantize_ties`` and ``compile`` into training settings; it trains through the
    feature-major pass of the coupling blocks and scores through their
    folded evaluator.

    With ``n_neighbors`` set, the anomaly score is the network's own score
    plus the distances to the ``n_neighbors``-th nearest training row in the
    standardised input and between the network's codes, each standardised by
    its median and interquartile range over the training rows (see
    :mod:`sklearn_flowod.neighbours`); ``None`` keeps the paper's score.
    """

    _device_state = ("neighbours_",)

    _parameter_constraints: dict = {
        **BaseDeepDetector._parameter_constraints,
        "n_blocks": [Interval(Integral, 1, None, closed="left")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "affine_clamping": [Interval(Real, 0, None, closed="neither")],
        "global_affine_init": [Interval(Real, 0, None, closed="neither")],
        "soft_permutation": ["boolean"],
        "noise_std": [Interval(Real, 0, None, closed="left")],
        "dequantize_ties": ["boolean"],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "lr_schedule": [StrOptions({"constant", "cosine"})],
        "compile": ["boolean"],
        "n_neighbors": [Interval(Integral, 1, None, closed="left"), None],
    }

    def _module_config(self, n_features: int) -> dict:
        return {
            "n_features": n_features,
            "n_blocks": self.n_blocks,
            "hidden_size": self.hidden_size,
            "affine_clamping": self.affine_clamping,
            "global_affine_init": self.global_affine_init,
            "soft_permutation": self.soft_permutation,
        }

    def _build_module(self, config: dict, seed: int) -> torch.nn.Module:
        return build_inn(**config, seed=seed)

    def _training_config(self) -> TrainingConfig:
        return dataclasses.replace(
            super()._training_config(),
            max_grad_norm=self.max_grad_norm,
            # the network sees standardised data divided by _input_divisor_
            noise_std=self.noise_std / self._input_divisor_,
            compile=self.compile,
        )

    def _callbacks(self) -> list[Callback]:
        schedule = [CosineSchedule()] if self.lr_schedule == "cosine" else []
        return [*schedule, *super()._callbacks()]

    def _train(self, module, loss, X_train, X_val, generator, **options):
        if self.dequantize_ties and "noise_widths" not in options:
            widths = tie_widths(X_train)
            # without repeated values there is nothing to spread: train as without
            options["noise_widths"] = widths if bool(widths.any()) else None
        # training evaluates the couplings feature-major (the same maths, fewer operations)
        return super()._train(CouplingPass(module), loss, X_train, X_val, generator, **options)

    def _finish_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return exact_inverse_permutations(super()._finish_module(module))

    def _scoring_module(self):
        # the folded evaluator of the coupling blocks (where it applies)
        return scoring_view(self.module_)

    # ------------------------------------------------------------------ #
    # The default score: the network's beside nearest-neighbour distances
    # ------------------------------------------------------------------ #
    def _scored_codes(self, module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw anomaly score and the codes ``INN(x)`` of a model-space batch.

        Two forward passes here; a detector whose score is read from the
        codes computes both from one.
        """
        return self._anomaly_score(module, batch), module(batch, jac=False)[0]

    def _fit_scoring(self, X_train: np.ndarray, seed: int,
                     X_known: np.ndarray | None = None) -> np.ndarray | None:
        """With ``n_neighbors``: the :class:`~sklearn_flowod.neighbours.NeighbourScore`
        of the training split (and of the known anomalies), and its rows'
        leave-one-out scores."""
        self.neighbours_ = None
        self.n_neighbors_ = None
        if self.n_neighbors is None:
            return None
        self.neighbours_, train_scores = NeighbourScore.fit(
            X_train, self.n_neighbors, seed,
            to_model=self._reference_rows, apply=self._apply_fitted,
            scored_codes=self._scored_codes, owner=type(self).__name__, known=X_known)
        self.n_neighbors_ = self.neighbours_.n_neighbors
        return train_scores

    def _reference_rows(self, X: np.ndarray) -> torch.Tensor:
        return self._to_model_input(X, torch.float64)

    def _apply_fitted(self, X: np.ndarray, fn) -> np.ndarray:
        return self._apply_in_batches(X, fn, validate=False)

    def _score_batch(self, module, batch: torch.Tensor) -> torch.Tensor:
        if self.neighbours_ is None:
            return self._anomaly_score(module, batch)
        score, codes = self._scored_codes(module, batch)
        return self.neighbours_(score, batch, codes)

    def _scoring_overhead(self) -> tuple[int, float]:
        if getattr(self, "neighbours_", None) is None:
            return 0, 0.0
        return self.neighbours_.row_bytes(), self.neighbours_.row_macs()

    def _fit_offset(self, X: np.ndarray, train_scores: np.ndarray | None) -> float:
        """With neighbours and ``contamination="auto"``: Tukey's upper fence
        (Q3 + 1.5 IQR) of the fit rows' scores, each training row leaving itself
        out of its neighbours (as a new row would be scored)."""
        if train_scores is None or self.contamination != "auto":
            return super()._fit_offset(X, train_scores)
        held_out = self.calibration_scores_
        scores = train_scores if held_out is None else np.concatenate([train_scores, held_out])
        return -tukey_fence(scores)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "neighbours_" in state and "n_neighbors_" not in state:  # saved in format 1
            neighbours = self.neighbours_
            self.n_neighbors_ = None if neighbours is None else neighbours.n_neighbors
