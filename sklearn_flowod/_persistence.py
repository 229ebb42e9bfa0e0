"""Pickling of a detector's torch module as CPU tensors, loadable without a GPU."""

from __future__ import annotations

import io

import torch

from ._device import loadable_device

#: Version of the pickled state's layout. Raise it whenever a model pickled
#: before would be loaded or scored differently by the installed code (its
#: state's keys, or how ``_build_module`` turns ``_module_config_`` into a
#: network); a pickle with a higher (unknown) format is refused.
#: 2: the nearest-neighbour score keeps its search in objects of its own (a
#: format-1 model's ``neighbours_`` is converted on load).
PERSISTENCE_FORMAT = 2
_FORMAT_KEY = "_sklearn_flowod_format"
_VERSION_KEY = "_sklearn_flowod_version"


class ModulePersistence:
    """Pickle ``module_`` as its CPU ``state_dict`` and rebuild it on load.

    FrEIA's blocks hold lambdas and cannot be pickled whole; the module is
    rebuilt from ``_module_config_`` by ``_build_module`` and its weights
    loaded onto ``device_``, or onto a device this machine has when it lacks
    that one (``cuda:0`` or the CPU, with a warning). The state also records
    the package version and :data:`PERSISTENCE_FORMAT`: a model of another
    version with the same format loads as it is, one of an unknown format
    raises a ``ValueError``. A model pickled before formats were recorded
    (format 0) takes the class constants of ``_scoring_constants`` from the
    installed code, which it was scored with.

    Other fitted state that holds tensors is named in ``_device_state``: each
    such attribute has a ``to(device)`` that returns a copy, is pickled on the
    CPU and moved to the loaded model's device.
    """

    #: Fitted attributes with a ``to(device)`` method, kept on ``device_``.
    _device_state: tuple[str, ...] = ()

    def __getstate__(self):
        from . import __version__

        state = dict(super().__getstate__())  # a copy: object's is the live __dict__
        state[_FORMAT_KEY] = PERSISTENCE_FORMAT
        state[_VERSION_KEY] = __version__
        for name in self._device_state:
            if state.get(name) is not None:
                state[name] = state[name].to("cpu")
        module = state.pop("module_", None)
        if module is not None:
            buffer = io.BytesIO()
            weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            torch.save(weights, buffer)
            state["_module_weights"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        from . import __version__

        state = dict(state)
        saved_format = state.pop(_FORMAT_KEY, 0)
        saved_version = state.pop(_VERSION_KEY, "(unknown version)")
        if not isinstance(saved_format, int) or not 0 <= saved_format <= PERSISTENCE_FORMAT:
            raise ValueError(
                f"This {type(self).__name__} was saved by sklearn_flowod {saved_version} in "
                f"persistence format {saved_format!r}, which sklearn_flowod {__version__} "
                f"cannot read (it reads formats up to {PERSISTENCE_FORMAT}); upgrade "
                "sklearn_flowod or refit the model."
            )
        weights = state.pop("_module_weights", None)
        if weights is not None and saved_format == 0:
            for name in self._scoring_constants:
                state.setdefault(name + "_", getattr(type(self), name))
        super().__setstate__(state)
        if weights is None:
            return
        device = self.device_ = loadable_device(self.device_)
        module = self._build_module(self._module_config_, seed=0)
        module = module.to(device=device, dtype=torch.float64)
        state_dict = torch.load(io.BytesIO(weights), map_location=device, weights_only=True)
        module.load_state_dict(state_dict)
        self.module_ = module.eval()
        for name in self._device_state:
            if getattr(self, name, None) is not None:
                setattr(self, name, getattr(self, name).to(device))
