"""Fast evaluation of a trained coupling flow for scoring.

FrEIA evaluates an ``AllInOneBlock`` row by row in a generic way: the
global affine scaling, the soft permutation, the factor 0.1 on the subnet's
output and every bias are separate operations over the whole batch, and the
coupling's two halves are strided column blocks, split and concatenated in
every block. For scoring, where the weights are fixed, all of that can be
folded into the matrices once:

* the state is kept feature-major, ``(1 + D, n_rows)``, with a constant row
  of ones on top, so that every half of it is one contiguous block of rows;
* each bias becomes one more column of its weight matrix (acting on the row
  of ones), so a layer is a single matrix product written straight into
  the next state, with no broadcast copies;
* the block's global scale and offset are folded into its permutation
  matrix, and the subnet's factor 0.1 into its output layer;
* a hard permutation (``soft_permutation=False``) mixes by moving rows of
  the state, scaled and shifted, instead of a product with a matrix that is
  almost all zeros: on a wide table that product is most of a block's cost.

The result equals FrEIA's forward pass up to floating-point rounding
(about 1e-15 relative in float64).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
from torch import nn

from ..networks import with_min_rows


class CouplingEvaluator:
    """Forward pass of a FrEIA ``SequenceINN`` of ``AllInOneBlock`` couplings, folded.

    Built by :func:`scoring_view` from a trained flow; callable like the flow
    itself for forward passes: ``evaluator(x, jac=True)`` returns
    ``(z, log_jac_det)``.

    Parameters
    ----------
    inn : FrEIA.framework.SequenceINN
        A flow as :func:`~sklearn_flowod.networks.build_inn` makes it. Its
        weights are copied (in its dtype and on its device), so later
        changes to the flow are not seen.
    """

    def __init__(self, inn: nn.Module):
        self.layers = []
        self.n_passive, self.n_active = inn.module_list[0].splits
        log_det = None
        with torch.no_grad():
            for block in inn.module_list:
                first, _, last = block.subnet
                scale = block.global_scale_activation(block.global_scale).reshape(-1)
                rotation = block.w_perm.reshape(block.w_perm.shape[:2])
                offset = rotation @ block.global_offset.reshape(-1)
                clamp = float(block.clamp)
                self.layers.append((
                    torch.cat([first.bias[:, None], first.weight], dim=1),
                    0.1 * torch.cat([last.weight, last.bias[:, None]], dim=1),
                    _mixing(rotation * scale, offset),
                    clamp,
                    torch.full((self.n_active,), clamp, dtype=scale.dtype, device=scale.device),
                ))
                block_log_det = torch.log(scale).sum()
                log_det = block_log_det if log_det is None else log_det + block_log_det
        self.log_det = log_det
        self.hidden_size = self.layers[0][0].shape[0]

    def __call__(self, x: torch.Tensor, jac: bool = True):
        """Map rows ``x`` to the latent space.

        Parameters
        ----------
        x : torch.Tensor of shape (n_rows, n_features)
            Rows in the flow's dtype and on its device.
        jac : bool, default=True
            Also return the log-determinant of the Jacobian.

        Returns
        -------
        z : torch.Tensor of shape (n_rows, n_features)
            Latent codes (a transposed view of a feature-major array).
        log_jac_det : torch.Tensor of shape (n_rows,) or None
            ``log |det dz/dx|`` per row, None when ``jac=False``.
        """
        # few rows are repeated: the same matrix-product kernels as for any batch
        return with_min_rows(lambda rows: self._forward(rows, jac), x)

    def _forward(self, x: torch.Tensor, jac: bool):
        # Every intermediate lives in one of four buffers written in place, and
        # every view of them is taken once: few operations per block and a
        # small working set. The state alternates between two buffers.
        n_rows, n_features = x.shape
        options = {"dtype": x.dtype, "device": x.device}
        states = [torch.empty((1 + n_features, n_rows), **options) for _ in range(2)]
        hidden = torch.empty((self.hidden_size + 1, n_rows), **options)
        coupling = torch.empty((2 * self.n_active, n_rows), **options)
        states[0][0] = states[1][0] = hidden[-1] = 1.0
        states[0][1:] = x.T
        passive = [state[: 1 + self.n_passive] for state in states]  # with the ones
        active = [state[1 + self.n_passive :] for state in states]
        features = [state[1:] for state in states]
        units = hidden[:-1]
        # the coupling's scale rows hold s, then tanh(s), then exp(clamp * tanh(s))
        scale_rows, shift_rows = coupling[: self.n_active], coupling[self.n_active :]
        log_jac_det = torch.zeros(n_rows, **options) if jac else None
        current = 0
        for first, last, mixing, clamp, clamps in self.layers:
            torch.mm(first, passive[current], out=units)
            units.relu_()
            torch.mm(last, hidden, out=coupling)
            scale_rows.tanh_()
            if jac:  # the sum of clamp * tanh over the half, as one product
                log_jac_det.addmv_(scale_rows.T, clamps)
            scale_rows.mul_(clamp).exp_()
            torch.addcmul(shift_rows, active[current], scale_rows, out=active[current])
            if isinstance(mixing, Permutation):
                torch.index_select(features[current], 0, mixing.source, out=features[1 - current])
                features[1 - current].mul_(mixing.factor).add_(mixing.shift)
            else:
                torch.mm(mixing, states[current], out=features[1 - current])
            current = 1 - current
        if jac:
            log_jac_det += self.log_det
        return features[current].T, log_jac_det


class Permutation(NamedTuple):
    """A mixing that moves feature ``source[i]`` to ``i``, then scales and shifts it."""

    source: torch.Tensor
    factor: torch.Tensor
    shift: torch.Tensor


def _mixing(matrix: torch.Tensor, offset: torch.Tensor):
    """A block's mixing ``matrix @ x + offset``: a :class:`Permutation` where every row
    of ``matrix`` has one non-zero entry, else the matrix with ``offset`` as its first
    column (acting on the state's row of ones)."""
    nonzero = matrix != 0
    if bool((nonzero.sum(dim=1) == 1).all()):
        source = nonzero.int().argmax(dim=1)
        factor = matrix.gather(1, source[:, None])
        return Permutation(source, factor, offset[:, None].clone())
    return torch.cat([offset[:, None], matrix], dim=1)


_views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scoring_view(module: nn.Module):
    """What scoring should call in place of ``module``.

    A :class:`CouplingEvaluator` of ``module``, cached per module and
    rebuilt when any of its parameters or buffers was replaced or modified
    in place, as recorded by the tensors' version counters (which torch's
    fused optimisers do not advance: build a new evaluator for a network in
    training).
    """
    tensors = [*module.parameters(), *module.buffers()]
    try:
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    except RuntimeError:  # inference tensors keep no version counter: no caching
        return CouplingEvaluator(module)
    cached = _views.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    evaluator = CouplingEvaluator(module)
    _views[module] = (key, evaluator)
    return evaluator
