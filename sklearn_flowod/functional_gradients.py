"""Gradients of a loss term as one compiled graph, through ``torch.func``.

A compiled term differentiated by autograd runs as two compiled graphs, the
forward and the backward pass, joined by autograd at every call: the
runtime wrappers of the compiled function, the autograd engine, and one
gradient accumulation per parameter tensor. On a CPU, where a step of a
small network is a few milliseconds, that is about a millisecond per call.
Differentiating the term with :func:`torch.func.grad_and_value` inside the
compiled function makes the forward and the backward pass one graph, which
returns the loss and the gradients; the step adds them to the parameters'
gradients with one fused operation.

The term must be a pure function of the network's parameters and its
inputs: no random draws and no side effects, as the terms of a
:class:`~sklearn_flowod.training_step.SummedLoss` are.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value


class EvaluatedNetwork(nn.Module):
    """``view``'s forward pass, as a module holding the network it reads.

    :func:`torch.func.functional_call` substitutes the parameters of a
    module; this one registers ``module`` as its submodule ``network``, so
    that ``functional_call(evaluated, {"network.<name>": tensor, ...})``
    evaluates ``view`` on the substituted parameters.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network.
    view : callable
        Called like ``module`` (``view(x, **kwargs)``) and reading its
        parameters, e.g. ``module`` itself or
        :class:`~sklearn_flowod.padded_coupling.PaddedCouplingForward`.
    """

    def __init__(self, module: nn.Module, view: Callable):
        super().__init__()
        self.network = module
        # a plain attribute (not a submodule): the parameters are the network's
        object.__setattr__(self, "view", None if view is module else view)

    def forward(self, *args, **kwargs):
        """``view(*args, **kwargs)``."""
        return (self.network if self.view is None else self.view)(*args, **kwargs)

    def trainable_parameters(self) -> dict[str, torch.Tensor]:
        """The network's parameters that require gradients, by ``functional_call`` name."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}


def _term_gradients(term, evaluated, parameters, *args):
    """Gradients of ``term(network, *args)`` with respect to ``parameters``, and its value."""

    def value(substituted):
        def network(*inputs, **kwargs):
            # no tied weights in the package's networks: untying them would only
            # add guards to every compiled call
            return functional_call(evaluated, substituted, inputs, kwargs, tie_weights=False)

        return term(network, *args)

    return grad_and_value(value)(parameters)


_GRADIENT_FUNCTIONS: dict = {}


def term_gradients(term: Callable) -> Callable:
    """The function that differentiates ``term``, to be compiled.

    Parameters
    ----------
    term : callable
        ``term(network, *args)`` returns a scalar tensor, where ``network`` is
        called like the trained module.

    Returns
    -------
    gradients : callable
        ``gradients(term, evaluated, parameters, *args)`` returns
        ``(grads, value)``: the gradients of ``term(network, *args)`` with
        respect to ``parameters`` (a dict of tensors, substituted into
        ``evaluated``, an :class:`EvaluatedNetwork`) and the term's value.
        Terms that share code share the function; each code has a function
        of its own, so that ``torch.compile``, which keeps its compiled
        graphs per function code, keeps them per term and not all in one
        bounded cache.
    """
    function = getattr(term, "__func__", term)
    key = getattr(function, "__code__", type(term))
    if key not in _GRADIENT_FUNCTIONS:
        name = getattr(function, "__qualname__", type(term).__qualname__)
        code = _term_gradients.__code__.replace(co_name=f"gradients_of_{name.replace('.', '_')}")
        _GRADIENT_FUNCTIONS[key] = types.FunctionType(code, _term_gradients.__globals__,
                                                      code.co_name)
    return _GRADIENT_FUNCTIONS[key]


def accumulate_gradients(
    parameters: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor], alpha: float = 1.0
) -> None:
    """Add ``alpha * gradients`` to the parameters' ``.grad`` (set it where there is none)."""
    if all(p.grad is not None for p in parameters):
        torch._foreach_add_([p.grad for p in parameters], list(gradients), alpha=alpha)
        return
    for p, gradient in zip(parameters, gradients, strict=True):
        if p.grad is None:
            p.grad = gradient * alpha
        else:
            p.grad.add_(gradient, alpha=alpha)
