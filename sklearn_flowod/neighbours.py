"""The default score's nearest-neighbour part: made once at fit, applied by one object.

The INN-based detectors add to their own score two nearest-neighbour
distances: to the k-th nearest reference row in the standardised input, and
between the network's codes ``INN(x)``, where the training rows lie (nearly)
standard normal. Each of the three parts is standardised by its median and
interquartile range over the reference rows (their distances leave the row
itself out) and the parts are summed. The decision pages "nearest
neighbours" of the benchmarks measured this sum against each part alone, on the dev sets and on the
mixed-type table: a density ranks poorly on data with many clusters or
discrete columns, a distance where scales differ between regions.

**Known anomalies.** A detector fitted with known anomalies (see
:mod:`sklearn_flowod.known_anomalies`) adds two parts, one per space:
``d_k / (d_k + d_a)``, with ``d_a`` the distance to the nearest known
anomaly, standardised on the reference rows like the others. It is near 1
where a known anomaly lies nearer than the k-th normal neighbour and near 0
deep among the normal rows, so it lifts the rows that resemble a known
anomaly and leaves a row far from every known one (a new pattern) to the
other parts. ``benchmarks/semi_supervised.py`` measures it.

With ``contamination="auto"`` a detector's ``offset_`` is then Tukey's upper
fence (Q3 + 1.5 IQR) of the fit rows' scores, each training row scored
leaving itself out.

**What a model holds.** A fitted :class:`NeighbourScore` keeps the reference
rows (up to :data:`MAX_REFERENCE_ROWS` standardised training rows, from which
the training values are recovered exactly with the stored ``mean_`` and
``scale_``) and their codes (which reveal the same rows, the network being
invertible), and the known anomalies it was given with their codes; a
pickled detector carries them all. ``n_neighbors=None`` keeps no training
row and no known anomaly.

**The search.** :class:`ExactNeighbours` finds candidates by a float32 matrix
product over blocks of rows, keeps per row the groups of
:data:`GROUP_SIZE` reference rows with the smallest minima (the k nearest lie
in the k groups of smallest minimum), and returns the exact float64 distance
to the k-th nearest of a few more candidates than k, computed from the
coordinate differences. The float32 product only chooses candidates, and a
bound on its rounding certifies that no other row is nearer (rows it cannot
certify are searched in float64): a distance is exact to float64 rounding and
never depends on the rows it is batched with
(``benchmarks/results/neighbour_search.md`` compared the candidate engines).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from sklearn.utils._chunking import get_chunk_n_rows

#: At most this many training rows are kept as neighbours (a random subset of
#: the training split beyond it): scoring a row costs a distance to each.
MAX_REFERENCE_ROWS = 10_000
#: Reference rows per group of the candidate selection.
GROUP_SIZE = 64
#: Candidates beyond the k-th whose exact distance is computed.
CANDIDATE_MARGIN = 2
#: Query rows per block of the float32 product (its scores stay in cache).
QUERY_BLOCK = 512


class ExactNeighbours:
    """Exact distance to the k-th nearest of fixed reference rows.

    Candidates come from a float32 product of centred rows, and each row's
    answer is certified: with ``u = 2**-24`` and ``D`` features, no float32
    ranking value is off by more than ``(D + 3) u (|x|^2 + 2 max|y|^2)``, so
    when the exact k-th distance of the candidates lies below every
    non-candidate's ranking less that bound, no other row can be nearer. A
    row that is not certified (rare: far outliers, near-ties across the
    candidates' edge) is searched again in float64. Repeated reference rows
    (discrete data) are searched once and counted as often as they occur. A
    call checks its rows once, so a GPU waits for the device once per scored
    batch.

    Parameters
    ----------
    rows : Tensor of shape (n_reference, n_features)
        The reference rows (float64), on the device searches run on.
    """

    def __init__(self, rows: torch.Tensor):
        self.rows = rows
        # repeated rows are searched once and counted as often as they occur
        unique, self._counts = torch.unique(rows, dim=0, return_counts=True)
        n_rows, n_features = unique.shape
        self._center = rows.mean(dim=0)
        self._centred = unique - self._center
        n_groups = -(-n_rows // GROUP_SIZE)
        padded = n_groups * GROUP_SIZE
        # one product gives the ranking |y|^2 - 2 x.y of [x, 1] against [-2 y, |y|^2];
        # padding rows rank far beyond any reference row and are never chosen
        self._ranker = torch.zeros(padded, n_features + 1, dtype=torch.float32,
                                   device=rows.device)
        self._ranker[:n_rows, :-1] = -2.0 * self._centred
        self._ranker[:n_rows, -1] = self._centred.square().sum(dim=1)
        self._ranker[n_rows:, -1] = torch.finfo(torch.float32).max / 4
        self._norms64 = self._centred.square().sum(dim=1)
        self._error = (n_features + 3) * 2.0 ** -24
        self._max_norm = 2.0 * float(self._norms64.max()) if n_rows else 0.0

    def __getstate__(self):
        return {"rows": self.rows}

    def __setstate__(self, state):
        self.__init__(state["rows"])

    def to(self, device: torch.device | str) -> ExactNeighbours:
        """The same search with its rows on ``device``."""
        return ExactNeighbours(self.rows.to(device))

    def kth_distance(self, X: torch.Tensor, k: int, leave_out: bool = False) -> torch.Tensor:
        """Euclidean distance of every row of ``X`` (float64) to its k-th nearest row.

        ``leave_out=True`` for rows of the reference itself: the nearest match
        (the row) is skipped, as PyOD's kNN scores its training rows.
        """
        k = min(k + leave_out, self.rows.shape[0])
        n_candidates = min(k + CANDIDATE_MARGIN, self._centred.shape[0])
        X = X - self._center
        squared = torch.empty(X.shape[0], dtype=self.rows.dtype, device=X.device)
        certified = torch.ones(X.shape[0], dtype=torch.bool, device=X.device)
        block = self._query_block()
        for start in range(0, X.shape[0], block):
            rows = slice(start, start + block)
            squared[rows], certified[rows] = self._block_kth(X[rows], k, n_candidates)
        # one check per call (a device sync on a GPU): rows not certified, in float64
        if not bool(certified.all()):
            uncertain = ~certified
            squared[uncertain] = self._float64_kth(X[uncertain], k, n_candidates)
        return squared.sqrt()

    def _query_block(self) -> int:
        """Query rows per float32 product: as many rankings as scikit-learn's
        ``working_memory`` holds, on a CPU at most :data:`QUERY_BLOCK` (the
        rankings then stay in cache)."""
        rows = get_chunk_n_rows(row_bytes=4 * self._ranker.shape[0])
        return min(rows, QUERY_BLOCK) if self.rows.device.type == "cpu" else rows

    def _block_kth(self, X: torch.Tensor, k: int, n_candidates: int):
        """Squared k-th distances of a block of centred rows, and which are certified."""
        n_rows, n_reference = X.shape[0], self._centred.shape[0]
        n_groups = self._ranker.shape[0] // GROUP_SIZE
        n_kept = min(n_candidates, n_groups)
        # |y|^2 - 2 x.y ranks the reference rows as |x - y|^2 does
        ones = torch.ones(n_rows, 1, dtype=X.dtype, device=X.device)
        ranking = torch.cat([X, ones], dim=1).to(torch.float32) @ self._ranker.T
        ranking = ranking.view(n_rows, n_groups, GROUP_SIZE)
        minima = ranking.amin(dim=2).topk(min(n_kept + 1, n_groups), dim=1, largest=False)
        groups = minima.indices[:, :n_kept]
        within = ranking.gather(1, groups[:, :, None].expand(-1, -1, GROUP_SIZE))
        best = within.view(n_rows, -1).topk(n_candidates, dim=1, largest=False, sorted=False)
        candidates = groups.gather(1, best.indices // GROUP_SIZE) * GROUP_SIZE \
            + best.indices % GROUP_SIZE
        kth = self._exact_kth(X, candidates.clamp_(max=n_reference - 1), k)
        if n_candidates == n_reference:
            return kth, True
        # every other reference row ranks at least this (in float32)
        others = best.values.amax(dim=1)
        if n_groups > n_kept:
            others = torch.minimum(others, minima.values[:, n_kept])
        norms = X.square().sum(dim=1)
        bound = others.to(X.dtype) + norms - self._error * (norms + self._max_norm)
        return kth, kth <= bound

    def _exact_kth(self, X: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
        """The k-th smallest squared distance to the candidates (each counted as often as
        it occurs in the reference), from coordinate differences."""
        # in place: one (rows x candidates x features) array instead of three
        difference = self._centred[candidates]
        squared = difference.sub_(X[:, None, :]).square_().sum(dim=2)
        if self._centred.shape[0] == self.rows.shape[0]:  # no repeated rows
            return squared.kthvalue(k, dim=1).values
        squared, order = squared.sort(dim=1)
        reached = self._counts[candidates].gather(1, order).cumsum(dim=1) >= k
        return squared.gather(1, reached.int().argmax(dim=1, keepdim=True))[:, 0]

    def _float64_kth(self, X: torch.Tensor, k: int, n_candidates: int) -> torch.Tensor:
        ranking = torch.addmm(self._norms64, X, self._centred.T, alpha=-2.0)
        candidates = ranking.topk(n_candidates, dim=1, largest=False, sorted=False).indices
        return self._exact_kth(X, candidates, k)


class NeighbourScore:
    """The standardised sum of a network's score and k-th nearest-neighbour distances.

    Made by :meth:`fit` from the training split, then called on every scored
    batch: ``neighbour_score(score, batch, codes)``. With known anomalies two
    more parts join the sum, one in each space: the ratio
    ``d_k / (d_k + d_a)`` of the k-th neighbour distance among the normal
    rows to the distance ``d_a`` to the nearest known anomaly (see
    :func:`known_ratio`).

    Parameters
    ----------
    rows : Tensor of shape (n_reference, n_features)
        Reference rows in the network's input space (float64).
    codes : Tensor of shape (n_reference, n_latent)
        The network's codes of ``rows`` (float64).
    n_neighbors : int
        Which neighbour's distance is taken (at most ``n_reference - 1``).
    known, known_codes : Tensor of shape (n_known, n_features) and (n_known, n_latent), optional
        The known anomalies in the network's input space and their codes
        (float64); None without known anomalies.
    """

    def __init__(self, rows: torch.Tensor, codes: torch.Tensor, n_neighbors: int,
                 known: torch.Tensor | None = None, known_codes: torch.Tensor | None = None):
        self.inputs, self.codes = ExactNeighbours(rows), ExactNeighbours(codes)
        self.n_neighbors = n_neighbors
        self.known_inputs = None if known is None else ExactNeighbours(known)
        self.known_codes = None if known is None else ExactNeighbours(known_codes)
        n_parts = 3 if known is None else 5
        self.center = torch.zeros(n_parts, dtype=rows.dtype, device=rows.device)
        self.scale = torch.ones(n_parts, dtype=rows.dtype, device=rows.device)

    @classmethod
    def fit(cls, X_train: np.ndarray, n_neighbors: int, seed: int, *,
            to_model: Callable[[np.ndarray], torch.Tensor],
            apply: Callable, scored_codes: Callable, owner: str = "detector",
            known: np.ndarray | None = None):
        """Keep the reference rows and standardise the parts on them.

        Parameters
        ----------
        X_train : ndarray of shape (n_rows, n_features)
            The validated training split (the rows the network trained on).
        n_neighbors : int
            The requested neighbour; beyond ``n_reference - 1`` it warns and
            takes the last one.
        seed : int
            Draws the reference rows when there are more than
            :data:`MAX_REFERENCE_ROWS`.
        to_model : callable
            Standardises rows into the network's input (float64 tensor).
        apply : callable
            ``apply(X, fn)`` evaluates ``fn(module, batch)`` over rows ``X``
            in bounded batches (the detector's ``_apply_in_batches``).
        scored_codes : callable
            ``scored_codes(module, batch)`` returns the network's raw anomaly
            score and codes of a batch.
        owner : str
            The detector's name, for the warning.
        known : ndarray of shape (n_known, n_features), optional
            The validated known anomalies, kept for the two ratio parts.

        Returns
        -------
        neighbour_score : NeighbourScore
        train_scores : ndarray of shape (n_rows,)
            Every training row's score, the reference rows leaving themselves out.
        """
        keep = np.arange(X_train.shape[0])
        if keep.size > MAX_REFERENCE_ROWS:
            keep = np.sort(np.random.RandomState(seed).choice(keep, MAX_REFERENCE_ROWS,
                                                              replace=False))
        reference = X_train[keep]
        largest = max(1, reference.shape[0] - 1)
        if n_neighbors > largest:
            warnings.warn(f"n_neighbors={n_neighbors} is not below the {reference.shape[0]} "
                          f"reference rows of {owner}: n_neighbors_={largest} is used.",
                          UserWarning, stacklevel=4)
        rows = to_model(reference)
        codes = apply(reference, _CodesOf(scored_codes))
        known_rows = known_codes = None
        if known is not None:
            known_rows = to_model(known)
            known_codes = torch.as_tensor(apply(known, _CodesOf(scored_codes)),
                                          device=rows.device)
        self = cls(rows, torch.as_tensor(codes, device=rows.device), min(n_neighbors, largest),
                   known_rows, known_codes)

        def parts(module, batch):  # the reference rows themselves: leave each one out
            return self.parts(*scored_codes(module, batch), batch, leave_out=True)

        reference_parts = torch.as_tensor(apply(reference, parts), device=rows.device)
        self.center, self.scale = robust_scale(reference_parts)
        others = np.delete(X_train, keep, axis=0)
        train_scores = np.concatenate([
            self.combine(reference_parts).cpu().numpy(),
            apply(others, self.score_batch(scored_codes)) if others.shape[0] else np.empty(0)])
        return self, train_scores

    def __setstate__(self, state: dict) -> None:
        if "rows" in state:  # saved before the search had its own object (format 1)
            state = {**state, "inputs": ExactNeighbours(state.pop("rows")),
                     "codes": ExactNeighbours(state["codes"])}
        self.__dict__.update({"known_inputs": None, "known_codes": None, **state})

    def to(self, device: torch.device | str) -> NeighbourScore:
        """A copy whose tensors live on ``device``."""
        copy = object.__new__(NeighbourScore)
        copy.__dict__ = {key: value.to(device) if hasattr(value, "to") else value
                         for key, value in self.__dict__.items()}
        return copy

    def parts(self, score: torch.Tensor, codes: torch.Tensor, batch: torch.Tensor,
              leave_out: bool = False) -> torch.Tensor:
        """The unstandardised parts of every row, shape (n_rows, 3), or (n_rows, 5)
        with known anomalies."""
        inputs = self.inputs.kth_distance(batch, self.n_neighbors, leave_out)
        latent = self.codes.kth_distance(codes, self.n_neighbors, leave_out)
        parts = [score.to(self.center.dtype), inputs, latent]
        if self.known_inputs is not None:
            parts += [known_ratio(inputs, self.known_inputs.kth_distance(batch, 1)),
                      known_ratio(latent, self.known_codes.kth_distance(codes, 1))]
        return torch.stack(parts, dim=1)

    def combine(self, parts: torch.Tensor) -> torch.Tensor:
        """The sum of the standardised parts."""
        return ((parts - self.center) / self.scale).sum(dim=1)

    def __call__(self, score: torch.Tensor, batch: torch.Tensor,
                 codes: torch.Tensor) -> torch.Tensor:
        """The default anomaly score of a model-space batch."""
        return self.combine(self.parts(score, codes, batch))

    def score_batch(self, scored_codes: Callable) -> Callable:
        """``fn(module, batch)`` giving the default score, for ``apply``."""
        return _ScoredBatch(self, scored_codes)

    def row_bytes(self) -> int:
        """Bytes per scored row beyond the network's: the coordinate differences of
        every search's candidates (the k-th normal neighbour's in both spaces and,
        with known anomalies, the nearest known anomaly's)."""
        width = self.inputs.rows.shape[1] + self.codes.rows.shape[1]
        n_candidates = self.n_neighbors + 1 + CANDIDATE_MARGIN
        if self.known_inputs is not None:
            n_candidates += 1 + CANDIDATE_MARGIN
        return 8 * n_candidates * width

    def row_macs(self) -> float:
        """Multiply-adds per scored row of the searches."""
        searches = [self.inputs, self.codes, self.known_inputs, self.known_codes]
        return float(sum(search.rows.shape[0] * search.rows.shape[1]
                         for search in searches if search is not None))

    @property
    def n_reference(self) -> int:
        """How many training rows (and codes) the score keeps."""
        return int(self.inputs.rows.shape[0])


def known_ratio(normal: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``d_k / (d_k + d_a)``: near 1 where the nearest known anomaly is much nearer
    than the k-th normal neighbour, near 0 deep among normal rows (0 where both
    distances are 0). It ranks as ``log d_k - log d_a`` does, bounded."""
    return normal / (normal + known).clamp_min(torch.finfo(normal.dtype).tiny)


def robust_scale(parts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's median and interquartile range, the centre and scale of the parts.

    A column whose interquartile range is zero (more than half of the rows
    tied) is scaled by its standard deviation instead, or left unscaled.
    """
    levels = torch.tensor([0.25, 0.5, 0.75], dtype=parts.dtype, device=parts.device)
    low, center, high = torch.quantile(parts, levels, dim=0)
    spread = high - low
    tiny = torch.finfo(parts.dtype).eps
    spread = torch.where(spread > tiny, spread, parts.std(dim=0))
    return center, torch.where(spread > tiny, spread, torch.ones_like(spread))


def tukey_fence(scores: np.ndarray) -> float:
    """Tukey's upper fence of anomaly scores, Q3 + 1.5 IQR: the default threshold."""
    q1, q3 = np.percentile(scores, [25.0, 75.0])
    return float(q3 + 1.5 * (q3 - q1))


class _ScoredBatch:
    """The default score as a function of (module, batch), for batched evaluation."""

    def __init__(self, neighbour_score: NeighbourScore, scored_codes: Callable):
        self.neighbour_score, self.scored_codes = neighbour_score, scored_codes

    def __call__(self, module, batch: torch.Tensor) -> torch.Tensor:
        score, codes = self.scored_codes(module, batch)
        return self.neighbour_score(score, batch, codes)



class _CodesOf:
    """The codes alone of ``scored_codes``."""

    def __init__(self, scored_codes: Callable):
        self.scored_codes = scored_codes

    def __call__(self, module, batch: torch.Tensor) -> torch.Tensor:
        return self.scored_codes(module, batch)[1]
