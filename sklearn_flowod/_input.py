"""Validation of the rows a detector fits on or scores: dense, sparse or empty."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import validate_data


def check_rows(estimator, X, *, reset: bool, min_samples: int):
    """Validate ``X`` with scikit-learn's ``validate_data``; sparse input stays sparse.

    Sparse input is returned as a CSR matrix (rows are sliced cheaply). An
    empty DataFrame is reported as an empty array, in scikit-learn's words,
    instead of the error pandas raises when it has no columns to convert.
    """
    shape = getattr(X, "shape", None)
    if hasattr(X, "dtypes") and shape is not None and len(shape) == 2 and 0 in shape:
        name = type(estimator).__name__
        if shape[0] < min_samples:
            raise ValueError(f"Found array with {shape[0]} sample(s) (shape={tuple(shape)}) "
                             f"while a minimum of {min_samples} is required by {name}.")
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(shape)}) while a "
                         f"minimum of 1 is required by {name}.")
    return validate_data(estimator, X, reset=reset, accept_sparse="csr",
                         dtype=[np.float64, np.float32], ensure_min_samples=min_samples)


def dense_rows(X):
    """``X`` as a dense array (a sparse matrix is densified, an array is returned as is)."""
    return X.toarray() if sp.issparse(X) else X


def model_input(X, mean, scale, divisor: float, device, dtype, generator=None) -> torch.Tensor:
    """``(X - mean) / scale`` on ``device`` in ``dtype``, 1-D data padded.

    See ``BaseDeepDetector._to_model_input``; ``scale`` includes the
    divisor, by which the training padding noise is divided too. A sparse
    ``X`` is densified here.
    """
    X = dense_rows(X)
    if isinstance(X, np.ndarray) and not (X.flags.writeable and min(X.strides) >= 0):
        X = np.array(X)  # torch cannot wrap read-only memory or reversed views
    # standardised in float64, then cast: a column with a large offset (a
    # timestamp) keeps its variation in float32
    x = torch.as_tensor(X, device=device).to(torch.float64, copy=True)
    mean = torch.as_tensor(mean, dtype=torch.float64, device=device)
    scale = torch.as_tensor(scale, dtype=torch.float64, device=device)
    x = x.sub_(mean).div_(scale).to(dtype)
    if x.shape[1] == 1:
        if generator is None:
            pad = torch.zeros_like(x)
        else:
            pad = torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
            pad /= divisor
        x = torch.cat([x, pad], dim=1)
    return x
