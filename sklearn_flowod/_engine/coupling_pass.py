"""The coupling flow's pass for training: FrEIA's ``AllInOneBlock`` maths,
feature-major, with autograd.

FrEIA keeps a batch row-major, so each coupling half is a strided block of
columns that every block splits, scales and concatenates again, and it
computes the log-determinant even when it is not asked for. Here the state
is feature-major, ``(D, n_rows)``: each half is a contiguous block of rows,
a subnet layer is one ``addmm`` with its bias, the subnet's factor 0.1 is
folded into the output layer's product and the global scale and offset are
one ``addcmul`` before the fixed mixing matrix (whose weight gradient is
never formed). The codes are returned row-major and contiguous, so the
loss and its gradient run on contiguous memory. The parameters are FrEIA's
own, so the optimiser, the snapshots and scoring see the same module.
"""

from __future__ import annotations

import torch
from torch import nn


class CouplingPass(nn.Module):
    """A FrEIA ``SequenceINN`` of plain ``AllInOneBlock`` couplings, evaluated feature-major.

    Callable like the flow: ``view(x, rev=False, jac=True)`` returns
    ``(z, log_jac_det)`` (``log_jac_det`` is None when ``jac=False``); the
    result equals FrEIA's up to floating-point rounding, with gradients.

    Parameters
    ----------
    inn : FrEIA.framework.SequenceINN
        A flow as :func:`~sklearn_flowod.networks.build_inn` makes it, held,
        not copied: its parameters are this module's.
    """

    def __init__(self, inn: nn.Module):
        super().__init__()
        self.inn = inn

    def forward(self, x: torch.Tensor, rev: bool = False, jac: bool = True):
        blocks = self.inn.module_list
        n_passive, n_active = blocks[0].splits
        x, log_jac_det = x.T, 0.0
        for block in reversed(blocks) if rev else blocks:
            first, _, last = block.subnet
            scale = block.global_scale_activation(block.global_scale).reshape(-1, 1)
            offset = block.global_offset.reshape(-1, 1)
            mixing = (block.w_perm_inv if rev else block.w_perm).reshape(len(scale), -1)
            if rev:  # undo the mixing: (W^-1 y - offset) / scale
                x = (mixing @ x - offset) / scale
            passive, active = x.split([n_passive, n_active])
            hidden = torch.addmm(first.bias[:, None], first.weight, passive).relu_()
            out = torch.addmm(last.bias[:, None], last.weight, hidden, beta=0.1, alpha=0.1)
            log_scale, shift = out.split([n_active, n_active])
            log_scale = block.clamp * torch.tanh(log_scale)
            active = ((active - shift) * torch.exp(-log_scale) if rev
                      else torch.addcmul(shift, active, torch.exp(log_scale)))
            if jac:
                log_jac_det = log_jac_det + log_scale.sum(dim=0) + torch.log(scale).sum()
            x = torch.cat([passive, active])
            if not rev:  # the mixing: W (scale * x + offset), W fixed
                x = mixing @ torch.addcmul(offset, x, scale)
        return x.T.contiguous(), (-log_jac_det if rev else log_jac_det) if jac else None
