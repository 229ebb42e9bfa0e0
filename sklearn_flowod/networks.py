"""Network builders: the FrEIA invertible network and its coupling subnets,
bias-free MLPs."""

from __future__ import annotations

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import torch
from torch import nn

from ._random import isolated_rng


class CouplingSubnet:
    """Picklable factory of the small MLPs that predict coupling coefficients.

    FrEIA calls ``subnet_constructor(channels_in, channels_out)`` once per
    block. A class instance (rather than a lambda) keeps the configuration
    explicit and picklable.

    Parameters
    ----------
    hidden_size : int
        Width of the hidden layers.
    n_hidden_layers : int, default=1
        Number of hidden layers, each followed by a ReLU.
    zero_init : bool, default=True
        Initialise the output layer to zero so that every coupling starts as
        the identity and the network starts as a product of its global affine
        scalings and permutations.
    """

    def __init__(self, hidden_size: int, n_hidden_layers: int = 1, zero_init: bool = True):
        self.hidden_size = hidden_size
        self.n_hidden_layers = n_hidden_layers
        self.zero_init = zero_init

    def __call__(self, channels_in: int, channels_out: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = channels_in
        for _ in range(self.n_hidden_layers):
            layers += [nn.Linear(width, self.hidden_size), nn.ReLU()]
            width = self.hidden_size
        out = nn.Linear(width, channels_out)
        if self.zero_init:
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        layers.append(out)
        return nn.Sequential(*layers)


def build_inn(n_features: int, *, n_blocks: int, hidden_size: int, affine_clamping: float,
              global_affine_init: float = 1.0, zero_init: bool = True,
              soft_permutation: bool = False, seed: int = 0) -> Ff.SequenceINN:
    """Build a FrEIA ``SequenceINN`` of ``AllInOneBlock`` couplings.

    Parameters
    ----------
    n_features : int
        Dimension of the data, at least 2 (a coupling needs two halves).
    n_blocks : int
        Number of ``AllInOneBlock`` couplings.
    hidden_size : int
        Width of the single hidden layer of every coupling subnet.
    affine_clamping : float
        FrEIA's soft clamp of the log-scale: ``clamp * tanh(0.1 * a)``.
    global_affine_init : float, default=1.0
        Initial value of each block's global (ActNorm-like) scale.
    zero_init : bool, default=True
        Start every coupling as the identity (see :class:`CouplingSubnet`).
    soft_permutation : bool, default=False
        Mix the features between blocks with a random rotation
        (:func:`random_rotation`) instead of a random permutation. In few
        dimensions a permutation is often the identity, so consecutive
        couplings transform the same half; a rotation mixes every feature
        into both halves at the same cost.
    seed : int, default=0
        Seed for weight initialisation and the blocks' hard permutations; the
        caller's global NumPy and torch generators are left unchanged.

    Returns
    -------
    inn : FrEIA.framework.SequenceINN
        ``inn(x)`` returns ``(z, log_jac_det)``; ``inn(z, rev=True)`` inverts.
    """
    if n_features < 2:
        raise ValueError(f"An invertible network needs at least 2 features, got {n_features}.")
    subnet = CouplingSubnet(hidden_size, zero_init=zero_init)
    with isolated_rng(seed):
        inn = Ff.SequenceINN(n_features)
        for _ in range(n_blocks):
            # FrEIA's own soft permutation draws its rotation with scipy, which
            # takes minutes in a thousand dimensions: a hard one is replaced
            inn.append(Fm.AllInOneBlock, subnet_constructor=subnet, permute_soft=False,
                       affine_clamping=affine_clamping, global_affine_init=global_affine_init)
            if soft_permutation:
                _set_rotation(inn.module_list[-1], random_rotation(n_features))
    return inn


def random_rotation(n: int) -> torch.Tensor:
    """A random orthogonal ``n x n`` matrix, uniform (Haar) on the orthogonal group.

    The Q factor of a standard normal matrix, its columns' signs fixed by the
    diagonal of R (Mezzadri, 2007), drawn from torch's global generator: one
    QR decomposition, fast in thousands of dimensions.
    """
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _set_rotation(block: nn.Module, rotation: torch.Tensor) -> None:
    """Make ``rotation`` the block's mixing matrix (and its transpose the inverse)."""
    with torch.no_grad():
        block.w_perm.copy_(rotation.reshape(block.w_perm.shape))
        block.w_perm_inv.copy_(rotation.T.reshape(block.w_perm_inv.shape))


def exact_inverse_permutations(module: nn.Module) -> nn.Module:
    """Make every block's inverse mixing matrix the exact inverse of its forward one.

    FrEIA stores a rotation and its transpose separately, each rounded to the
    module's dtype, so the stored transpose is the inverse only up to that
    rounding, and the mismatch grows through the couplings. This recomputes
    each inverse from the forward matrix in float64 (in place; modules
    without such matrices are left alone). Call it again after changing the
    module's dtype.

    Returns
    -------
    module : torch.nn.Module
        The same module.
    """
    with torch.no_grad():
        for block in module.modules():
            forward = getattr(block, "w_perm", None)
            inverse = getattr(block, "w_perm_inv", None)
            if isinstance(forward, torch.Tensor) and isinstance(inverse, torch.Tensor):
                exact = torch.linalg.inv(forward.reshape(inverse.shape[:2]).double())
                inverse.copy_(exact.reshape(inverse.shape).to(inverse.dtype))
    return module


def build_bias_free_mlp(n_inputs: int, hidden_sizes, n_outputs: int, *,
                        negative_slope: float = 0.01, seed: int = 0) -> nn.Sequential:
    """Build an MLP without any bias term and with unbounded activations.

    Every layer is ``nn.Linear(..., bias=False)``; hidden layers are followed
    by a leaky ReLU, the output layer is linear. Such a network maps 0 to 0
    and cannot output a constant other than 0 for all inputs unless its
    weights vanish, which is what Deep SVDD needs to avoid a collapsed
    representation (Ruff et al., 2018, section 3.3).

    Parameters
    ----------
    n_inputs : int
        Input dimension.
    hidden_sizes : sequence of int
        Widths of the hidden layers (may be empty: one linear map).
    n_outputs : int
        Output dimension.
    negative_slope : float, default=0.01
        Slope of the leaky ReLU for negative inputs.
    seed : int, default=0
        Seed of the weight initialisation; the caller's global generators
        are left unchanged.

    Returns
    -------
    mlp : torch.nn.Sequential
    """
    widths = [n_inputs, *hidden_sizes, n_outputs]
    layers: list[nn.Module] = []
    with isolated_rng(seed):
        for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(width_in, width_out, bias=False))
            if i < len(widths) - 2:
                layers.append(nn.LeakyReLU(negative_slope))
    return nn.Sequential(*layers)


#: Fewer rows than this are repeated up to it before a network (see :func:`with_min_rows`).
MIN_ROWS = 8


def with_min_rows(fn, x: torch.Tensor, min_rows: int = MIN_ROWS) -> torch.Tensor:
    """Evaluate the row-wise function ``fn`` on ``x``, on at least ``min_rows`` rows.

    Matrix products of very few rows take other CPU kernels than those of
    many rows, which changes the last bits of the result. Repeating a small
    batch up to ``min_rows`` rows (and keeping the first copy's results)
    keeps a row's result, however the rows were batched, within float64
    rounding of its result in a large batch (a few units in the last place:
    some BLAS libraries pick kernels by row count at any size).

    ``fn`` returns a tensor of per-row results, or a tuple of such tensors
    (entries may be None).
    """
    n_rows = x.shape[0]
    if n_rows >= min_rows:
        return fn(x)
    result = fn(x.repeat(-(-min_rows // n_rows), 1))
    if isinstance(result, tuple):
        return tuple(None if part is None else part[:n_rows] for part in result)
    return result[:n_rows]
