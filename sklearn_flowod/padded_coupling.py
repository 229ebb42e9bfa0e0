"""A coupling flow's training forward pass with its halves padded to a full vector.

``torch.compile`` turns a coupling block's element-wise work (the soft clamp,
the exponential, the affine update, the global scaling and their gradients)
into C++ loops over rows that process 16 float32 columns per vector
instruction on a CPU. A half of 9 to 15 columns (17 to 31 features) then
fills no vector completely, and every load and store of it is masked: on the
fraud-like table's 30 features (halves of 15) a compiled training step took
longer than at 32 features. :class:`PaddedCouplingForward` evaluates the same
flow, with the same parameters and gradients, on a state whose halves are
padded with zero columns to 16: the padding columns stay exactly zero through
every block (zero weights in and out of them), so the result equals FrEIA's
forward pass up to floating-point rounding. At 32 features (halves of
16, no padding) the same pass compiled to faster training steps than FrEIA's
block too (it computes the global scaling and the rotation in one linear
map per block instead of after a concatenation); with wider halves it was
slower, and FrEIA's block is compiled as it is.
"""

from __future__ import annotations

import FrEIA.framework as Ff
import torch
import torch.nn.functional as F
from torch import nn

from .coupling_evaluator import is_foldable

#: Float32 columns per vector register of the CPU code ``torch.compile``
#: generates (AVX-512).
VECTOR_WIDTH = 16


def padded_width(width: int) -> int:
    """Columns a coupling half of ``width`` features is padded to.

    Halves of 9 to 15 features are padded to one full vector. Narrower ones
    are not (padding 4 features to 16 made a step slower), nor are wider
    ones, whose vectors are mostly full already.
    """
    return VECTOR_WIDTH if VECTOR_WIDTH // 2 < width < VECTOR_WIDTH else width


class PaddedCouplingForward:
    """Differentiable forward pass of a foldable coupling flow, on padded halves.

    Callable like the flow for forward passes, ``forward(x, jac=True)``
    returns ``(z, log_jac_det)``; it reads the flow's parameters at every
    call, so gradients reach them as through the flow itself. Every block
    computes FrEIA's ``AllInOneBlock`` map: the affine coupling of the active
    half, ``x_a * exp(clamp * tanh(0.1 s)) + 0.1 t`` with ``(s, t)`` the
    subnet's output on the passive half, then the global affine scaling and
    the fixed rotation.

    Parameters
    ----------
    inn : FrEIA.framework.SequenceINN
        A flow that passes :func:`~sklearn_flowod.coupling_evaluator.is_foldable`.
    """

    def __init__(self, inn: Ff.SequenceINN):
        self.inn = inn
        self.sizes = tuple(inn.module_list[0].splits)
        self.widths = tuple(padded_width(size) for size in self.sizes)

    def __call__(self, x: torch.Tensor, jac: bool = True):
        """Map rows ``x`` to the latent space.

        Parameters
        ----------
        x : torch.Tensor of shape (n_rows, n_features)
        jac : bool, default=True
            Also return the log-determinant of the Jacobian.

        Returns
        -------
        z : torch.Tensor of shape (n_rows, n_features)
        log_jac_det : torch.Tensor of shape (n_rows,) or None
        """
        (n_passive, n_active), (passive, active) = self.sizes, self.widths
        state = self._pad_parts(x, 1)
        log_jac_det = 0.0
        for block in self.inn.module_list:
            first, _, last = block.subnet
            hidden = torch.relu(
                F.linear(state[:, :passive], _pad(first.weight, passive - n_passive, 1),
                         first.bias)
            )
            coefficients = 0.1 * F.linear(
                hidden, _pad_halves(last.weight, n_active, active),
                _pad_halves(last.bias, n_active, active),
            )
            log_scale = block.clamp * torch.tanh(coefficients[:, :active])
            moved = state[:, passive:] * torch.exp(log_scale) + coefficients[:, active:]
            scale = block.global_scale_activation(block.global_scale).reshape(-1)
            offset = block.global_offset.reshape(-1)
            rotation = block.w_perm.reshape(block.w_perm.shape[:2])
            coupled = torch.cat([state[:, :passive], moved], dim=1)
            state = F.linear(
                coupled * self._pad_parts(scale, 0) + self._pad_parts(offset, 0),
                self._pad_parts(self._pad_parts(rotation, 0), 1),
            )
            if jac:
                log_jac_det = log_jac_det + log_scale.sum(dim=1) + torch.log(scale).sum()
        z = torch.cat([state[:, :n_passive], state[:, passive : passive + n_active]], dim=1)
        return z, (log_jac_det if jac else None)

    def _pad_parts(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """Pad the passive and the active part of ``tensor`` along ``dim`` with zeros."""
        parts = tensor.split(self.sizes, dim)
        return torch.cat(
            [_pad(part, width - size, dim)
             for part, size, width in zip(parts, self.sizes, self.widths, strict=True)],
            dim,
        )


def _pad(tensor: torch.Tensor, extra: int, dim: int) -> torch.Tensor:
    """``tensor`` with ``extra`` zeros appended along ``dim``."""
    if extra == 0:
        return tensor
    return F.pad(tensor, [0, 0] * (tensor.dim() - 1 - dim) + [0, extra])


def _pad_halves(tensor: torch.Tensor, size: int, width: int) -> torch.Tensor:
    """Pad both halves (log-scale and shift rows) of a subnet's output layer to ``width``."""
    scale_rows, shift_rows = tensor.split(size, 0)
    return torch.cat([_pad(scale_rows, width - size, 0), _pad(shift_rows, width - size, 0)])


def padded_view(module: nn.Module):
    """What compiled training on a CPU evaluates in place of ``module``.

    A :class:`PaddedCouplingForward` of ``module`` when it is a foldable
    coupling flow on a CPU with a coupling half of 9 to 16 features (padded to
    16 where fewer, :func:`padded_width`), else ``module`` itself.
    """
    if not is_foldable(module):
        return module
    if next(module.parameters()).device.type != "cpu":
        return module
    if not any(padded_width(size) == VECTOR_WIDTH for size in module.module_list[0].splits):
        return module
    return PaddedCouplingForward(module)
