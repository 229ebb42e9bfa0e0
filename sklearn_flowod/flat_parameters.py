"""A network's trainable parameters as views of one contiguous buffer.

Every step of the training loop clears and clips the gradients of all
trainable parameters and updates their values. A coupling flow has dozens of small parameter
tensors; handled one by one, that is dozens of tiny kernels per step and
their dispatch from Python, a noticeable share of a step on a CPU. While
training, :func:`flat_parameters` lets the weights and their gradients live
in one buffer each, so that each of these is one operation on one tensor:
an optimiser over the single flat parameter updates every weight of the
network, and autograd accumulates the gradients straight into the views.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def flat_parameters(module: nn.Module) -> Iterator[list[nn.Parameter]]:
    """Within the block, the trainable parameters of ``module`` share one buffer.

    Each trainable parameter keeps its identity (state dicts, hooks and the
    forward pass are unaffected) but its data becomes a view of one flat
    parameter and its gradient a view of that parameter's gradient, which
    starts at zero. Gradients must be cleared in place inside the block
    (``zero_grad(set_to_none=False)``), never set to None. On leaving the
    block every parameter gets its own storage again and no gradient.

    When the trainable parameters differ in dtype or device (or there are
    none), nothing is moved and the block sees them as they are.

    Parameters
    ----------
    module : torch.nn.Module
        The network to train.

    Yields
    ------
    parameters : list of torch.nn.Parameter
        What an optimiser should update: the one flat parameter (all
        trainable weights concatenated in the order of
        ``module.parameters()``), or the trainable parameters themselves.
    """
    members = [p for p in module.parameters() if p.requires_grad]
    if len({(p.dtype, p.device) for p in members}) != 1:
        yield members
        return
    with torch.no_grad():
        data = torch.cat([p.detach().reshape(-1) for p in members])
    flat = nn.Parameter(data)
    flat.grad = torch.zeros_like(data)
    offset = 0
    for member in members:
        size = member.numel()
        member.data = data[offset : offset + size].view_as(member)
        member.grad = flat.grad[offset : offset + size].view_as(member)
        offset += size
    try:
        yield [flat]
    finally:
        for member in members:
            member.data = member.data.clone()
            member.grad = None
