"""What every detector built on the FrEIA invertible network shares."""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .._engine.coupling_pass import CouplingPass
from .._engine.folded import scoring_view
from ..base import BaseDeepDetector
from ..callbacks import Callback, CosineSchedule
from ..networks import build_inn, exact_inverse_permutations
from ..training import TrainingConfig


class BaseINNDetector(BaseDeepDetector):
    """Network parameters and training options of the INN-based detectors.

    Not to be used directly. Subclasses define their loss and score; this
    class turns ``n_blocks``, ``hidden_size``, ``affine_clamping``,
    ``global_affine_init`` and ``soft_permutation`` into the network, and
    ``lr_schedule``, ``max_grad_norm``, ``noise_std`` (in standardised
    units) and ``compile`` into training settings; it trains through the
    feature-major pass of the coupling blocks and scores through their
    folded evaluator.
    """

    _parameter_constraints: dict = {
        **BaseDeepDetector._parameter_constraints,
        "n_blocks": [Interval(Integral, 1, None, closed="left")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "affine_clamping": [Interval(Real, 0, None, closed="neither")],
        "global_affine_init": [Interval(Real, 0, None, closed="neither")],
        "soft_permutation": ["boolean"],
        "noise_std": [Interval(Real, 0, None, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "lr_schedule": [StrOptions({"constant", "cosine"})],
        "compile": ["boolean"],
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
        # training evaluates the couplings feature-major (the same maths, fewer operations)
        return super()._train(CouplingPass(module), loss, X_train, X_val, generator, **options)

    def _finish_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return exact_inverse_permutations(super()._finish_module(module))

    def _scoring_module(self):
        # the folded evaluator of the coupling blocks (where it applies)
        return scoring_view(self.module_)
