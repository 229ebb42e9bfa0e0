"""A network's score beside distances to the nearest training rows.

The INN-based detectors add to their own score two nearest-neighbour
distances: to the k-th nearest reference row in the standardised input, and
between the network's codes ``INN(x)``, where the training rows lie (nearly)
standard normal. Each of the three parts is standardised by its median and
interquartile range over the reference rows (their distances leave the row
itself out) and the three are summed. ``benchmarks/latent_neighbours.py``
measured this sum against each part alone, on the dev sets and on the
mixed-type table: a density ranks poorly on data with many clusters or
discrete columns, a distance where scales differ between regions.

With ``contamination="auto"`` a detector's ``offset_`` is then Tukey's upper
fence (Q3 + 1.5 IQR) of the fit rows' scores, each training row scored
leaving itself out. Scoring a row costs a distance to each reference row, and
a pickled model holds those rows and their codes.
"""

from __future__ import annotations

import torch

#: At most this many training rows are kept as neighbours (a random subset of
#: the training split beyond it): scoring a row costs a distance to each.
MAX_REFERENCE_ROWS = 10_000


def kth_distance(X: torch.Tensor, reference: torch.Tensor, k: int,
                 leave_out: bool = False) -> torch.Tensor:
    """Euclidean distance of every row of ``X`` to its k-th nearest row of ``reference``.

    ``leave_out=True`` for rows of ``reference`` itself: the nearest match
    (the row) is skipped, as PyOD's kNN scores its training rows.
    """
    n_nearest = min(k + leave_out, reference.shape[0])
    distances = torch.cdist(X, reference)
    return distances.topk(n_nearest, dim=1, largest=False).values[:, -1]


class NeighbourScore:
    """The standardised sum of a score and two k-th nearest-neighbour distances.

    Parameters
    ----------
    rows : Tensor of shape (n_reference, n_features)
        Reference rows in the network's input space.
    codes : Tensor of shape (n_reference, n_latent)
        The network's codes of ``rows``.
    n_neighbors : int
        Which neighbour's distance is taken (at most ``n_reference - 1``).
    """

    def __init__(self, rows: torch.Tensor, codes: torch.Tensor, n_neighbors: int):
        self.rows, self.codes = rows, codes
        self.n_neighbors = max(1, min(n_neighbors, rows.shape[0] - 1))
        self.center = torch.zeros(3, dtype=rows.dtype, device=rows.device)
        self.scale = torch.ones(3, dtype=rows.dtype, device=rows.device)

    def parts(self, score: torch.Tensor, batch: torch.Tensor, codes: torch.Tensor,
              leave_out: bool = False) -> torch.Tensor:
        """The unstandardised parts of every row, shape (n_rows, 3)."""
        return torch.stack([score.to(self.rows.dtype),
                            kth_distance(batch, self.rows, self.n_neighbors, leave_out),
                            kth_distance(codes, self.codes, self.n_neighbors, leave_out)], dim=1)

    def fit(self, parts: torch.Tensor) -> NeighbourScore:
        """Take each part's median and interquartile range from the reference rows.

        A part whose interquartile range is zero (more than half of the rows
        tied) is scaled by its standard deviation instead, or left unscaled.
        """
        levels = torch.tensor([0.25, 0.5, 0.75], dtype=parts.dtype, device=parts.device)
        low, self.center, high = torch.quantile(parts, levels, dim=0)
        spread = high - low
        tiny = torch.finfo(parts.dtype).eps
        spread = torch.where(spread > tiny, spread, parts.std(dim=0))
        self.scale = torch.where(spread > tiny, spread, torch.ones_like(spread))
        return self

    def combine(self, parts: torch.Tensor) -> torch.Tensor:
        """The sum of the standardised parts."""
        return ((parts - self.center) / self.scale).sum(dim=1)

    def to(self, device: torch.device | str) -> NeighbourScore:
        """A copy whose tensors live on ``device``."""
        copy = object.__new__(NeighbourScore)
        copy.__dict__ = {key: value.to(device) if torch.is_tensor(value) else value
                         for key, value in self.__dict__.items()}
        return copy

    def row_bytes(self) -> int:
        """Bytes per scored row of the distance arrays (float64, both spaces, with topk)."""
        return 8 * 3 * self.rows.shape[0]

    def row_macs(self) -> float:
        """Multiply-adds per scored row of both distance computations."""
        return float(self.rows.shape[0] * (self.rows.shape[1] + self.codes.shape[1]))
