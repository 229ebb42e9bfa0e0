"""Loss terms clamped from below, whose clamped rows need no backward pass.

A term ``weight * mean_i max(v_i, floor)`` over per-row values ``v_i`` (the
contrastive flow's auxiliary term, eq. 3 of Schmier et al.) has no gradient
from a row whose value is below the floor: the maximum is the constant floor
there. Once a contrastive flow has pushed its auxiliary samples under the
clamp, most or all rows of a batch are such rows, and a backward pass over
them computes a gradient of zero. A training step on a CPU therefore leaves
them out:

* an uncompiled step evaluates the term on every row with gradients and
  skips the backward pass when no row is at or above the floor
  (:meth:`ClampedRowMean.value_and_gradient_rows`): with small batches a
  pass costs about as much for a few rows as for all of them;
* a compiled step screens the rows first (:func:`screen_rows`): one forward
  pass without gradients, through a fast inference-only copy of the
  network, gives every row's value, hence the term's value; the compiled
  forward and backward pass then runs only on the micro-batches that hold
  the rows which can still carry a gradient.

Either way the gradient is the same as the whole batch's (the rows left out
add exactly zero to it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

#: Rows whose screened value is below the floor by at most this fraction of
#: ``1 + |floor|`` are still evaluated with gradients: the screening pass and
#: the training pass may round differently. A row evaluated needlessly adds
#: exactly zero.
SCREENING_MARGIN = 1e-3


class ClampedRowMean:
    """The loss term ``weight * mean_i max(row_values(network, x)_i, floor)``.

    Parameters
    ----------
    row_values : callable
        ``row_values(network, x)`` returns one value per row of ``x``; it
        must not draw random numbers.
    weight : float, default=1.0
        Non-negative factor of the term.

    Notes
    -----
    Called as ``term(network, x, floor)`` (``floor`` a scalar tensor), it
    returns the term's value on all rows of ``x``. A
    :class:`~sklearn_flowod.training_step.TrainingStep` on a CPU
    backpropagates it only where rows are above the floor (see the module's
    description).
    """

    def __init__(self, row_values: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 weight: float = 1.0):
        self.row_values = row_values
        self.weight = weight

    def __call__(self, network, x: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
        """``weight * mean(max(row_values(network, x), floor))``."""
        return self.of_values(self.row_values(network, x), floor)

    def of_values(self, values: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
        """The term from its rows' values: ``weight * mean(max(values, floor))``."""
        return self.weight * torch.maximum(values, floor.to(values.dtype)).mean()

    def value_and_gradient_rows(
        self, network, x: torch.Tensor, floor: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The term's value and which rows it has a gradient from.

        Parameters
        ----------
        network : callable
            The network (or what is evaluated in its place).
        x : torch.Tensor of shape (n_rows, ...)
            The term's rows.
        floor : torch.Tensor
            The floor, a scalar.

        Returns
        -------
        value : torch.Tensor
            The term (as :meth:`__call__`).
        gradient_rows : torch.Tensor of bool, shape (n_rows,)
            Rows whose value is at or above the floor (none if ``weight`` is
            0): the term is constant in the others.
        """
        values = self.row_values(network, x)
        return self.of_values(values, floor), (values >= floor) & (self.weight != 0)


@dataclass
class ScreenedRows:
    """What :func:`screen_rows` found.

    Attributes
    ----------
    value : torch.Tensor
        The term's value on all rows (a scalar tensor).
    rows : torch.Tensor
        Indices of the rows to evaluate with gradients, every row above the
        floor (less a margin, :data:`SCREENING_MARGIN`) among them; possibly
        empty.
    fraction : float
        ``len(rows)`` over the number of rows: the factor of the gradient of
        the term evaluated on ``rows`` alone.
    """

    value: torch.Tensor
    rows: torch.Tensor
    fraction: float


def screen_rows(term: ClampedRowMean, view: Callable, x: torch.Tensor, floor: torch.Tensor,
                granularity: int = 1) -> ScreenedRows:
    """The rows of ``x`` whose clamped value can carry a gradient.

    Parameters
    ----------
    term : ClampedRowMean
        The term.
    view : callable
        Evaluated in place of the network, without gradients (e.g. a folded
        inference copy of it).
    x : torch.Tensor of shape (n_rows, ...)
        The term's rows.
    floor : torch.Tensor
        The term's floor, a scalar.
    granularity : int, default=1
        The number of selected rows is rounded up to a multiple of this
        (at most ``n_rows``), with the rows of the highest values: a
        compiled pass then always sees the same shape.

    Returns
    -------
    screened : ScreenedRows
    """
    with torch.no_grad():
        values = term.row_values(view, x)
        value = term.of_values(values, floor)
        floor = floor.to(values.dtype)
        threshold = floor - SCREENING_MARGIN * (1 + floor.abs())
        n_active = int((values > threshold).sum()) if term.weight else 0
        n_rows = values.shape[0]
        n_selected = min(n_rows, granularity * math.ceil(n_active / granularity))
        if n_selected == n_rows:
            rows = torch.arange(n_rows, device=x.device)
        else:
            rows = torch.topk(values, n_selected, sorted=False).indices
    return ScreenedRows(value, rows, n_selected / n_rows)
