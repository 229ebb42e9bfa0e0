"""Sweeps and scoring on a dask.distributed cluster (the ``distributed`` extra).

One LocalCluster serves the module: 2 worker processes with 1 thread each,
every socket bound to 127.0.0.1. Worker processes make every task cross a
pickle boundary, as on a real cluster. Each blocking call has a timeout so
that a broken cluster fails the test instead of hanging it.
"""

import contextlib
import logging
import os
import pickle
import threading

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold

pytest.importorskip("distributed", reason="needs the 'distributed' extra")
da = pytest.importorskip("dask.array", reason="needs the 'distributed' extra")
dd = pytest.importorskip("dask.dataframe", reason="needs the 'distributed' extra")
pd = pytest.importorskip("pandas")

import joblib  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from distributed.protocol import pickle as dask_pickle  # noqa: E402

from sklearn_flowod._device import resolve_device  # noqa: E402
from sklearn_flowod.distributed import SCORING_METHODS, score_partitions  # noqa: E402

from .conftest import same_params, small_detectors  # noqa: E402

#: Seconds any single blocking step may take before the test fails.
STEP_TIMEOUT = 120

ON_GPU_MACHINE = torch.cuda.is_available()


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        with Client(cluster, timeout=STEP_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=STEP_TIMEOUT)
            yield client
    finally:
        cluster.close(timeout=STEP_TIMEOUT)


def _bounded(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, failing the test if it runs past STEP_TIMEOUT."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(STEP_TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish in {STEP_TIMEOUT} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@contextlib.contextmanager
def _torch_threads(n):
    """Run the driver's torch with ``n`` threads, as each dask task does."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def labelled():
    """Inliers (+1) and outliers (-1), as scikit-learn's outlier scorers expect."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(150, 3)), rng.normal(loc=4.0, size=(15, 3))])
    y = np.r_[np.ones(150, dtype=int), -np.ones(15, dtype=int)]
    return X, y


def _sweep(estimator, X, y, **kwargs):
    search = GridSearchCV(
        estimator,
        {"weight_decay": [0.0, 1e-4], "learning_rate": [1e-3, 1e-2]},
        scoring={"auroc": "roc_auc", "ap": "average_precision"},
        refit="auroc",
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
        **kwargs,
    )
    return search.fit(X, y)


def _fit_on_worker(estimator, X):
    return estimator.fit(X)


def _worker_torch_threads():
    env = tuple(os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    return torch.get_num_threads(), env


def _threads_after_fit(estimator, X):
    estimator.fit(X)
    return _worker_torch_threads()


def _load_and_score(blob, X):
    return pickle.loads(blob).score_samples(X)


# --------------------------------------------------------------------------- #
# Sweeps
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
def test_dask_sweep_equals_sequential_sweep(client, labelled, detector):
    X, y = labelled
    estimator = clone(detector).set_params(max_epochs=3)
    with _torch_threads(1):
        sequential = _sweep(estimator, X, y)

    def on_dask():
        with joblib.parallel_config(backend="dask"):
            return _sweep(estimator, X, y, n_jobs=-1)

    parallel = _bounded(on_dask)
    expected, got = sequential.cv_results_, parallel.cv_results_
    compared = [key for key in expected if not key.endswith("_time")]
    assert set(compared) == {key for key in got if not key.endswith("_time")}
    for key in compared:
        if key == "params" or key.startswith("param_"):
            assert list(got[key]) == list(expected[key]), key
        else:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert parallel.best_params_ == sequential.best_params_
    np.testing.assert_array_equal(
        parallel.best_estimator_.score_samples(X), sequential.best_estimator_.score_samples(X)
    )


@pytest.mark.skipif(ON_GPU_MACHINE, reason="needs CPU-only workers")
@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
def test_cuda_setting_on_cpu_only_workers_is_a_clear_error(client, labelled, detector):
    X, y = labelled
    estimator = clone(detector).set_params(device="cuda")
    search = GridSearchCV(
        estimator,
        {"max_epochs": [1]},
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=2),
        n_jobs=-1,
        error_score="raise",
    )

    def on_dask():
        with joblib.parallel_config(backend="dask"):
            return search.fit(X, y)

    with pytest.raises(ValueError, match=r"device='cuda'.*CUDA is not available.*host"):
        _bounded(on_dask)


@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
def test_auto_device_resolves_on_the_worker(client, labelled, detector):
    X, _ = labelled
    estimator = clone(detector).set_params(device="auto", max_epochs=1)
    worker_devices = set(_bounded(client.run, resolve_device, "auto").values())
    fitted = client.submit(_fit_on_worker, estimator, X, pure=False).result(STEP_TIMEOUT)
    assert {fitted.device_} == worker_devices


@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
def test_torch_threads_follow_the_worker_configuration(client, labelled, detector):
    X, _ = labelled
    estimator = clone(detector).set_params(max_epochs=1)
    futures = [
        client.submit(_worker_torch_threads, pure=False),
        client.submit(_threads_after_fit, estimator, X, pure=False),
    ]
    for torch_threads, env in (future.result(STEP_TIMEOUT) for future in futures):
        # dask's nanny starts workers with OMP_NUM_THREADS=MKL_NUM_THREADS=1 (torch
        # reads both at import); fitting on the worker keeps one thread.
        assert env == ("1", "1")
        assert torch_threads == 1


# --------------------------------------------------------------------------- #
# Pickling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
def test_detectors_pickle_without_the_cloudpickle_fallback(detector, blobs, monkeypatch):
    X, X_out = blobs
    fitted = clone(detector).fit(X)

    def refuse(*args, **kwargs):
        raise AssertionError("cloudpickle fallback used")

    monkeypatch.setattr(dask_pickle.cloudpickle, "dumps", refuse)
    unfitted = dask_pickle.loads(dask_pickle.dumps(clone(detector)))  # what dask sends
    assert same_params(unfitted, detector)
    X_test = np.vstack([X, X_out])
    for payload in (dask_pickle.dumps(fitted), pickle.dumps(fitted)):
        restored = pickle.loads(payload)
        np.testing.assert_array_equal(restored.score_samples(X_test), fitted.score_samples(X_test))


@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
def test_plain_pickle_loads_and_scores_on_a_worker(client, detector, blobs):
    X, X_out = blobs
    fitted = clone(detector).fit(X)
    future = client.submit(_load_and_score, pickle.dumps(fitted), X_out, pure=False)
    np.testing.assert_array_equal(future.result(STEP_TIMEOUT), fitted.score_samples(X_out))


@pytest.mark.skipif(ON_GPU_MACHINE, reason="needs CPU-only workers")
@pytest.mark.filterwarnings("ignore:This detector was fitted on cuda")
@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
def test_gpu_fitted_detector_scores_on_cpu_workers(client, detector, blobs):
    X, X_out = blobs
    fitted = clone(detector).fit(X)
    expected = fitted.score_samples(X_out)
    fitted.device_ = torch.device("cuda")  # as if it had been fitted on a GPU
    # Unpickled on the workers (they warn there), the model falls back to their CPU.
    scores = score_partitions(fitted, da.from_array(X_out, chunks=(10, -1)))
    np.testing.assert_allclose(client.compute(scores).result(STEP_TIMEOUT), expected,
                               rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- #
# Scoring dask collections
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def fitted_pair(labelled):
    """The same detector fitted on an array and on a DataFrame, and data to score."""
    X, _ = labelled
    detector = small_detectors()[0].set_params(contamination=0.1)
    columns = [f"f{i}" for i in range(X.shape[1])]
    on_array = clone(detector).fit(X)
    on_frame = clone(detector).fit(pd.DataFrame(X, columns=columns))
    rng = np.random.RandomState(1)
    X_new = np.vstack([rng.normal(size=(900, 3)), rng.normal(loc=4.0, size=(100, 3))])
    return on_array, on_frame, X_new, columns


@pytest.mark.parametrize("method", sorted(SCORING_METHODS))
def test_scoring_a_dask_array_equals_local_scoring(client, fitted_pair, method):
    detector, _, X_new, _ = fitted_pair
    X_dask = da.from_array(X_new, chunks=(300, -1))
    scores = score_partitions(detector, X_dask, method)
    assert scores.chunks == ((300, 300, 300, 100),)
    assert scores.dtype == SCORING_METHODS[method]
    result = client.compute(scores).result(STEP_TIMEOUT)
    expected = getattr(detector, method)(X_new)
    assert result.dtype == expected.dtype
    _assert_same_scores(result, expected)
    if method == "predict":
        assert set(np.unique(result)) == {-1, 1}


@pytest.mark.parametrize("method", sorted(SCORING_METHODS))
def test_scoring_a_dask_dataframe_equals_local_scoring(client, fitted_pair, method):
    _, detector, X_new, columns = fitted_pair
    frame = pd.DataFrame(X_new, columns=columns, index=np.arange(X_new.shape[0]) * 10)
    scores = score_partitions(detector, dd.from_pandas(frame, npartitions=4), method)
    assert scores.name == method
    result = client.compute(scores).result(STEP_TIMEOUT)
    expected = getattr(detector, method)(frame)
    assert result.index.equals(frame.index)
    _assert_same_scores(result.to_numpy(), expected)


def test_empty_partitions_and_column_chunks_are_handled(client, fitted_pair):
    detector, detector_on_frame, X_new, columns = fitted_pair
    by_columns = da.from_array(X_new, chunks=(250, 1))
    result = client.compute(score_partitions(detector, by_columns)).result(STEP_TIMEOUT)
    _assert_same_scores(result, detector.score_samples(X_new))

    frame = pd.DataFrame(X_new, columns=columns)
    filtered = dd.from_pandas(frame, npartitions=4)
    # Keep rows 600 on: the first two of the four partitions become empty.
    filtered = filtered.map_partitions(lambda part: part[part.index >= 600], meta=filtered)
    scores = score_partitions(detector_on_frame, filtered, "decision_function")
    result = client.compute(scores).result(STEP_TIMEOUT)
    expected = detector_on_frame.decision_function(frame.iloc[600:])
    assert result.index.equals(frame.index[600:])
    _assert_same_scores(result.to_numpy(), expected)


def _assert_same_scores(result, expected):
    """Equal labels, and scores equal up to float64 rounding (docs/scaling_out.md): the
    network's matrix products may take other kernels for other row counts."""
    if np.issubdtype(expected.dtype, np.integer):
        np.testing.assert_array_equal(result, expected)
    else:
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


def test_scoring_helper_rejects_bad_input(fitted_pair):
    detector, _, X_new, _ = fitted_pair
    X_dask = da.from_array(X_new, chunks=(500, -1))
    with pytest.raises(ValueError, match="not a scoring method"):
        score_partitions(detector, X_dask, "fit")
    with pytest.raises(NotFittedError):
        score_partitions(clone(detector), X_dask)
    with pytest.raises(TypeError, match="dask array or a dask DataFrame"):
        score_partitions(detector, X_new)
    with pytest.raises(ValueError, match="2-D"):
        score_partitions(detector, X_dask[:, 0])
    with pytest.raises(ValueError, match="2-D"):
        score_partitions(detector, dd.from_pandas(pd.Series(X_new[:, 0]), npartitions=2))


def test_ray_sweep_equals_sequential_sweep(labelled):
    """The same sweep through Ray's joblib backend (runs only where ray is installed)."""
    pytest.importorskip("ray")
    import ray
    from ray.util.joblib import register_ray

    X, y = labelled
    estimator = small_detectors()[0].set_params(max_epochs=2)
    with _torch_threads(1):
        sequential = _sweep(estimator, X, y)
    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:

        def on_ray():
            with joblib.parallel_config(backend="ray"):
                return _sweep(estimator, X, y, n_jobs=-1)

        parallel = _bounded(on_ray)
    finally:
        ray.shutdown()
    for key in ("mean_test_auroc", "mean_test_ap", "rank_test_auroc"):
        np.testing.assert_array_equal(parallel.cv_results_[key], sequential.cv_results_[key])
