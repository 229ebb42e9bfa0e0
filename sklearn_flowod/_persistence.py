"""Pickling of a detector's torch module as CPU tensors, loadable without a GPU."""

from __future__ import annotations

import io
import warnings

import torch


class ModulePersistence:
    """Pickle ``module_`` as its CPU ``state_dict`` and rebuild it on load.

    FrEIA's blocks hold lambdas and cannot be pickled whole; the module is
    rebuilt from ``_module_config_`` by ``_build_module`` and its weights
    loaded onto ``device_``, or onto the CPU when that device is a GPU this
    machine lacks (with a warning).
    """

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object's is the live __dict__
        module = state.pop("module_", None)
        if module is not None:
            buffer = io.BytesIO()
            weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            torch.save(weights, buffer)
            state["_module_weights"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        weights = state.pop("_module_weights", None)
        super().__setstate__(state)
        if weights is None:
            return
        device = self.device_
        if device.type == "cuda" and not torch.cuda.is_available():
            warnings.warn(
                f"This detector was fitted on {device} but CUDA is not available here; "
                "it is loaded on the CPU.",
                UserWarning,
                stacklevel=2,
            )
            device = torch.device("cpu")
        self.device_ = device
        module = self._build_module(self._module_config_, seed=0)
        module = module.to(device=device, dtype=torch.float64)
        state_dict = torch.load(io.BytesIO(weights), map_location=device, weights_only=True)
        module.load_state_dict(state_dict)
        self.module_ = module.eval()
