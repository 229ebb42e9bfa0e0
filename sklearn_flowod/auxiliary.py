"""Generators of contrastive (auxiliary) samples.

Each generator is a plain scikit-learn transformer (``fit``/``transform``
with ``random_state``) and can also be handed to a contrastive detector as
its ``auxiliary`` parameter. There it is fitted on the detector's
standardised training data and asked, at every training step, for as many
contrastive samples as the batch has rows (:meth:`sample`, on the batch's
device, drawn from the detector's seeded generator).
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data


class _Sampler(TransformerMixin, BaseEstimator):
    """What the generators share: their tags."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        # Every transform draws afresh, and a permuted row depends on the other
        # rows, so scikit-learn's determinism and subset invariance do not apply.
        tags.non_deterministic = True
        return tags


class FeaturePermutation(_Sampler):
    """Permute every feature column independently of the others.

    The rows of the result are samples of the product of the data's
    marginal distributions: each feature keeps its values, the dependence
    between features is destroyed. This is the contrastive distribution of
    the credit-card experiment of Schmier et al. (2023, section 5.4), where
    "all samples in a batch [are permuted] per feature dimension".

    Parameters
    ----------
    random_state : int, RandomState instance or None, default=None
        Draws the permutations of ``transform``. With an int, every call of
        ``transform`` on the same data returns the same result.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    References
    ----------
    R. Schmier, U. Koethe and C.-N. Straehle. Positive difference
    distribution for image outlier detection using normalizing flows and
    contrastive data. TMLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_flowod import FeaturePermutation
    >>> X = np.arange(8.0).reshape(4, 2)
    >>> Y = FeaturePermutation(random_state=0).fit_transform(X)
    >>> np.sort(Y, axis=0).tolist()  # every column keeps its values
    [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]
    """

    _parameter_constraints: dict = {"random_state": ["random_state"]}

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y=None):
        """Record the number of features (nothing else is learned).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
        """
        self._validate_params()
        validate_data(self, X, dtype=[np.float64, np.float32])
        return self

    def transform(self, X):
        """Permute every column of ``X`` independently.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples to permute.

        Returns
        -------
        X_perm : ndarray of shape (n_samples, n_features)
            Column ``j`` is a permutation of column ``j`` of ``X``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], copy=True)
        rng = check_random_state(self.random_state)
        for j in range(X.shape[1]):
            X[:, j] = X[rng.permutation(X.shape[0]), j]
        return X

    def sample(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Contrastive samples for one training batch: its columns permuted.

        Parameters
        ----------
        batch : torch.Tensor of shape (n_rows, n_features)
            The (standardised) training batch.
        generator : torch.Generator
            Source of randomness, on the batch's device.

        Returns
        -------
        samples : torch.Tensor of shape (n_rows, n_features)
        """
        n_rows, n_features = batch.shape
        # one random permutation per column (drawing them is much cheaper than
        # sorting a matrix of random keys column by column), drawn into the
        # rows of a feature-major index so that the gather reads contiguous
        # index rows
        rows = torch.empty((n_features, n_rows), dtype=torch.long, device=batch.device)
        for column in rows:
            torch.randperm(n_rows, generator=generator, device=batch.device, out=column)
        return torch.gather(batch.t(), 1, rows).t().contiguous()


class UniformBox(_Sampler):
    """Uniform samples in the training data's bounding box, widened by a margin.

    A broad contrastive distribution q: every feature is drawn uniformly
    and independently in ``[min - margin * range, max + margin * range]``
    of the training data. ``transform(X)`` returns as many such samples as
    ``X`` has rows; the values of ``X`` are not used.

    Parameters
    ----------
    margin : float, default=0.1
        Widening of each side of the box, as a fraction of the feature's
        range in the training data.
    random_state : int, RandomState instance or None, default=None
        Draws the samples of ``transform``. With an int, every call of
        ``transform`` with the same number of rows returns the same result.

    Attributes
    ----------
    low_, high_ : ndarray of shape (n_features_in_,)
        Bounds of the widened box.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_flowod import UniformBox
    >>> X = np.array([[0.0, 10.0], [1.0, 20.0]])
    >>> box = UniformBox(margin=0.5, random_state=0).fit(X)
    >>> box.low_, box.high_
    (array([-0.5,  5. ]), array([ 1.5, 25. ]))
    >>> box.transform(np.zeros((3, 2))).shape
    (3, 2)
    """

    _parameter_constraints: dict = {
        "margin": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, margin=0.1, random_state=None):
        self.margin = margin
        self.random_state = random_state

    def fit(self, X, y=None):
        """Learn the widened bounding box of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        width = high - low
        self.low_ = low - self.margin * width
        self.high_ = high + self.margin * width
        return self

    def transform(self, X):
        """Draw one uniform sample in the box per row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Only its number of rows (and its dtype) is used.

        Returns
        -------
        samples : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        rng = check_random_state(self.random_state)
        u = rng.uniform(size=X.shape)
        return (self.low_ + u * (self.high_ - self.low_)).astype(X.dtype, copy=False)

    def sample(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Contrastive samples for one training batch: uniform in the fitted box.

        Parameters
        ----------
        batch : torch.Tensor of shape (n_rows, n_features)
            The (standardised) training batch; only its shape is used.
        generator : torch.Generator
            Source of randomness, on the batch's device.

        Returns
        -------
        samples : torch.Tensor of shape (n_rows, n_features)
        """
        check_is_fitted(self)
        low = torch.as_tensor(self.low_, dtype=batch.dtype, device=batch.device)
        high = torch.as_tensor(self.high_, dtype=batch.dtype, device=batch.device)
        u = torch.rand(batch.shape, generator=generator, device=batch.device, dtype=batch.dtype)
        return low + u * (high - low)
