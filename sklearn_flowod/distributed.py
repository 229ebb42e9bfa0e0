"""Scoring dask collections with a fitted detector, partition by partition.

Hyperparameter sweeps need nothing from this module: the detectors pickle
with the standard library's :mod:`pickle` and run unchanged under
``joblib.parallel_config(backend="dask")`` (see ``docs/scaling_out.md``).
What dask-ml's ``ParallelPostFit`` lacks is ``decision_function`` and
``score_samples``; :func:`score_partitions` scores a dask array or dask
DataFrame with any of the four scoring methods.

dask is imported only when a function of this module is called, so the
package works without the ``distributed`` extra
(``pip install "sklearn-flowod[distributed]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

if TYPE_CHECKING:  # pragma: no cover - only for type checkers
    import dask.array
    import dask.dataframe

__all__ = ["SCORING_METHODS", "score_partitions"]

#: The methods :func:`score_partitions` can apply, with their output dtype.
SCORING_METHODS: dict[str, np.dtype] = {
    "score_samples": np.dtype(np.float64),
    "decision_function": np.dtype(np.float64),
    "anomaly_score": np.dtype(np.float64),
    "predict": np.dtype(int),
}


def _import_dask():
    try:
        import dask
        import dask.array
    except ImportError as exc:
        raise ImportError("sklearn_flowod.distributed needs dask; install it with "
                          "pip install 'sklearn-flowod[distributed]'.") from exc
    return dask


def _dask_dataframe_module():
    """``dask.dataframe``, or None when its dependencies (pandas, pyarrow) are missing."""
    try:
        import dask.dataframe
    except ImportError:
        return None
    return dask.dataframe


def _score_block(block, detector, method: str, dtype: np.dtype) -> np.ndarray:
    """Apply ``detector.<method>`` to one in-memory block (NumPy or pandas)."""
    if block.shape[0] == 0:  # dask partitions may be empty, e.g. after a filter
        return np.empty(0, dtype=dtype)
    return np.asarray(getattr(detector, method)(block), dtype=dtype)


def _score_frame(frame, detector, method: str, dtype: np.dtype):
    """Apply ``detector.<method>`` to one pandas partition, keeping its index."""
    import pandas as pd

    return pd.Series(_score_block(frame, detector, method, dtype), index=frame.index, name=method)


def score_partitions(detector: Any, X: dask.array.Array | dask.dataframe.DataFrame,
                     method: str = "score_samples") -> dask.array.Array | dask.dataframe.Series:
    """Score a dask array or dask DataFrame with a fitted detector, lazily.

    Every partition (a block of rows) is scored independently with
    ``detector.<method>``, so the result equals what the method returns on
    the whole data in memory (the detectors' scores of a row do not depend
    on the other rows). The detector enters the task graph once, as a single
    key, and reaches each worker once, however many partitions there are.

    Parameters
    ----------
    detector : fitted estimator
        A fitted detector of this package, or any fitted scikit-learn
        outlier detector that has ``method``. It is pickled to the workers
        with the standard library's :mod:`pickle`, and scores on the device
        it was fitted on (on the CPU where that device is a GPU the worker
        lacks).
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        The rows to score. A dask array chunked along its columns is first
        rechunked so that each block holds whole rows. Pass a DataFrame's
        feature columns only; their names are checked against
        ``feature_names_in_`` as in local scoring.
    method : {"score_samples", "decision_function", "predict", "anomaly_score"}, \
            default="score_samples"
        The detector method applied to each partition.

    Returns
    -------
    scores : dask.array.Array of shape (n_samples,) or dask.dataframe.Series
        A lazy result, chunked like the rows of ``X``: a 1-D dask array for
        an array input, a Series named ``method`` with the index of ``X``
        for a DataFrame input. Its dtype is float64, or int for
        ``"predict"`` (+1 inlier, -1 outlier). Call ``.compute()`` to obtain
        the values, or keep it lazy and write it out with dask.

    Raises
    ------
    ValueError
        If ``method`` is not one of the four scoring methods, or ``X`` is not
        two-dimensional.
    TypeError
        If ``X`` is not a dask array or dask DataFrame.
    sklearn.exceptions.NotFittedError
        If ``detector`` is not fitted.

    See Also
    --------
    SCORING_METHODS : The accepted method names and their output dtypes.

    Notes
    -----
    Nothing is computed until the result is. Scores come from whichever
    scheduler is active: a ``dask.distributed.Client`` when one exists,
    otherwise dask's local threads. Under a ``Client``, each task uses the
    worker's torch threads (one per task with the default
    ``OMP_NUM_THREADS=1`` of dask's workers).

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn_flowod import InvertibleOneClassDetector
    >>> from sklearn_flowod.distributed import score_partitions
    >>> X = np.random.RandomState(0).normal(size=(200, 2))
    >>> det = InvertibleOneClassDetector(max_epochs=2, random_state=0).fit(X)
    >>> X_big = da.from_array(X, chunks=(50, 2))
    >>> scores = score_partitions(det, X_big, "decision_function")
    >>> scores.chunks
    ((50, 50, 50, 50),)
    >>> np.allclose(scores.compute(), det.decision_function(X))
    True
    """
    dask = _import_dask()
    if method not in SCORING_METHODS:
        raise ValueError(f"method={method!r} is not a scoring method; use one of "
                         f"{sorted(SCORING_METHODS)}.")
    if not hasattr(detector, method):
        raise TypeError(f"{type(detector).__name__} has no method {method!r}.")
    check_is_fitted(detector)
    dtype = SCORING_METHODS[method]
    # One key for the detector: each worker receives (and unpickles) it once.
    shared = dask.delayed(detector, pure=True)

    if isinstance(X, dask.array.Array):
        if X.ndim != 2:
            raise ValueError("X must be 2-D (n_samples, n_features); got a dask array of "
                             f"shape {X.shape}.")
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        return X.map_blocks(_score_block, shared, method, dtype, drop_axis=1, dtype=dtype,
                            meta=np.empty((0,), dtype=dtype))

    dd = _dask_dataframe_module()
    if dd is not None and isinstance(X, dd.DataFrame):
        meta = _score_frame(X._meta, detector=None, method=method, dtype=dtype)
        return X.map_partitions(_score_frame, shared, method, dtype, meta=meta)
    if dd is not None and isinstance(X, dd.Series):
        raise ValueError("X must be 2-D (n_samples, n_features); got a dask Series. "
                         "Use X.to_frame() for a single feature.")
    raise TypeError(f"X must be a dask array or a dask DataFrame, got {type(X).__name__}; "
                    f"score in-memory data with detector.{method}(X) directly.")
