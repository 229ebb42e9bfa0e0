"""Uniform dequantisation of repeated values, matched to each column.

A density model cannot give a finite density to a value that many training rows
share (a 0/1 flag, an hour of day, a count, the mode of a nearly constant
column): the likelihood grows without bound as the model concentrates mass on
it. Classical dequantisation adds uniform noise over the bin of each value, so
the model learns a density that is flat within the bin. A table's columns have
bins of different widths, so one noise level for every column is either too
small for a flag or too large for a fine-grained count.

:func:`tie_widths` gives every entry of a matrix the width of its value's bin:
the distance to the nearest other distinct value of the same column, for a
value that occurs more than once. Values that occur once (the continuous part
of a column) and constant columns get zero width, so the noise touches only the
atoms of the empirical law. Uniform noise on ``[-w/2, w/2]`` then fills each
atom's bin up to the middle of the gap to its nearest neighbour: for integers or
flags, exactly the unit bins of classical dequantisation.

A bin is at most :data:`MAX_WIDTH` standard deviations of its column wide: the
gap of a balanced 0/1 flag, whose two values lie one standard deviation either
side of the mean. Without the cap the mode of a nearly constant column (a pixel
that is almost always 0) would be spread up to the middle of the way to its
rare other values, dozens of standard deviations away, and a row with such a
rare value would look as normal as the mode. In the one-class network the cap
lifted MNIST and SVHN and lowered CIFAR-10 and cardio, for about the same mean
AUROC and a smaller seed spread
(``benchmarks/results/ablation_invertible_one_class_tie_cap.md`` beside
``ablation_invertible_one_class_ties.md``, whose rows without bins it
reproduces).
"""

from __future__ import annotations

import torch

#: The widest bin, in standard deviations of its column (see the module notes).
MAX_WIDTH = 2.0


def tie_widths(X: torch.Tensor) -> torch.Tensor:
    """The bin width of every entry of ``X`` (zero for values seen once).

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, n_features)
        Rows in the units the noise is added in.

    Returns
    -------
    widths : torch.Tensor of the shape, dtype and device of ``X``
        For an entry whose value occurs more than once in its column: the
        distance to the nearest other distinct value of that column, at
        most :data:`MAX_WIDTH` times the column's standard deviation (zero in
        a constant column); zero for a value that occurs once.
    """
    widths = torch.zeros_like(X)
    for column in range(X.shape[1]):
        values, inverse, counts = torch.unique(X[:, column], sorted=True, return_inverse=True,
                                               return_counts=True)
        if values.numel() < 2:
            continue
        gaps = values.diff()
        far = gaps.new_full((1,), float("inf"))
        nearest = torch.minimum(torch.cat([far, gaps]), torch.cat([gaps, far]))
        nearest = nearest.clamp(max=MAX_WIDTH * X[:, column].std(correction=0))
        widths[:, column] = torch.where(counts > 1, nearest, 0.0)[inverse]
    return widths


def add_uniform_noise(batch: torch.Tensor, widths: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
    """Add ``U[-w/2, w/2]`` noise to every entry of ``batch`` in place and return it."""
    noise = torch.empty_like(batch).uniform_(-0.5, 0.5, generator=generator)
    return batch.addcmul_(noise, widths)
