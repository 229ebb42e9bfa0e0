"""FLOP counts of a training step or a scoring pass, and the machine's matmul rate.

Model-FLOP utilisation (MFU) is ``FLOPs per sample x samples per second``
divided by the dense-matmul rate measured here, on the same machine and
with the same torch threads. FLOPs are the matrix products of the network
(forward, and for training also backward), counted by torch's
``FlopCounterMode`` on one real batch: element-wise work (activations,
clamps, exponentials, the optimiser) is not counted, as usual for MFU.
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_rate(
    dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0
) -> float:
    """Dense ``size x size`` matrix-product rate in FLOP/s with the current threads.

    Parameters
    ----------
    dtype : torch.dtype, default=torch.float32
        Element type of the product.
    size : int, default=2048
        Side of the square matrices.
    seconds : float, default=2.0
        Approximate time spent measuring (after one warm-up product).

    Returns
    -------
    rate : float
        Best observed FLOP/s over the repeats.
    """
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    best, spent = 0.0, 0.0
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        elapsed = time.perf_counter() - start
        spent += elapsed
        best = max(best, 2.0 * size**3 / elapsed)
    return best


def count_flops(fn, *args) -> int:
    """Matmul FLOPs of ``fn(*args)`` (run once), including any backward it calls."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()
