"""GPU behaviour; skipped on machines without CUDA."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone

from sklearn_flowod._engine.batches import CPU_MAX_ROWS, scoring_rows

from .conftest import small_detectors

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.parametrize(
        "detector", small_detectors(), ids=[type(d).__name__ for d in small_detectors()]
    ),
]

X = np.random.RandomState(0).normal(size=(400, 4))


def test_auto_device_trains_and_keeps_every_tensor_on_the_gpu(detector):
    det = clone(detector).set_params(device="auto").fit(X)
    assert det.device_.type == "cuda"
    assert all(p.device.type == "cuda" for p in det.module_.parameters())
    assert all(b.device.type == "cuda" for b in det.module_.buffers())
    neighbours = getattr(det, "neighbours_", None)
    if neighbours is not None:
        assert all(t.device.type == "cuda" for t in vars(neighbours).values()
                   if torch.is_tensor(t))
    scores = det.score_samples(X)
    assert scores.dtype == np.float64 and np.all(np.isfinite(scores))


def test_gpu_model_round_trips_through_pickle(detector):
    det = clone(detector).set_params(device="cuda").fit(X)
    loaded = pickle.loads(pickle.dumps(det))
    assert loaded.device_.type == "cuda"
    np.testing.assert_allclose(loaded.score_samples(X), det.score_samples(X), rtol=1e-12)


def test_gpu_model_loads_on_a_cpu_only_machine(detector, monkeypatch):
    det = clone(detector).set_params(device="cuda").fit(X)
    expected = det.score_samples(X)
    payload = pickle.dumps(det)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        loaded = pickle.loads(payload)
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_allclose(loaded.score_samples(X), expected, rtol=1e-6, atol=1e-6)


def test_model_fitted_on_a_missing_gpu_index_loads_on_the_first_gpu(detector):
    det = clone(detector).set_params(device="cuda").fit(X)
    expected = det.score_samples(X)
    det.device_ = torch.device(f"cuda:{torch.cuda.device_count()}")  # as if fitted elsewhere
    with pytest.warns(UserWarning, match="CUDA device"):
        loaded = pickle.loads(pickle.dumps(det))
    assert loaded.device_ == torch.device("cuda:0")
    np.testing.assert_allclose(loaded.score_samples(X), expected, rtol=1e-12)


def test_same_seed_same_scores_on_the_gpu(detector):
    a = clone(detector).set_params(device="cuda", random_state=1).fit(X)
    b = clone(detector).set_params(device="cuda", random_state=1).fit(X)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-5, atol=1e-6)


def test_missing_cuda_index_is_a_clear_error(detector):
    bad = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match="CUDA device"):
        clone(detector).set_params(device=bad).fit(X)


def test_scoring_batches_on_the_gpu_follow_the_working_memory(detector):
    det = clone(detector).set_params(device="cuda").fit(X)
    whole = det.score_samples(X)
    with sklearn.config_context(working_memory=0.004):
        rows = scoring_rows(det.module_, X.shape[1], len(X), det.device_)
        batched = det.score_samples(X)
    assert 1 < rows < len(X)
    np.testing.assert_allclose(batched, whole, rtol=1e-10, atol=1e-10)
    # no CPU cache cap on the GPU: a large working memory gives every row at once
    with sklearn.config_context(working_memory=4096):
        assert scoring_rows(det.module_, X.shape[1], 10 * CPU_MAX_ROWS, det.device_) == (
            10 * CPU_MAX_ROWS)


def test_a_gpu_fit_restores_the_callers_cpu_threads(detector):
    before = torch.get_num_threads()
    det = clone(detector).set_params(device="cuda", n_jobs=1).fit(X)
    assert torch.get_num_threads() == before
    det.score_samples(X)
    assert torch.get_num_threads() == before


def test_gpu_early_stopping_keeps_the_best_check(detector):
    det = clone(detector).set_params(device="cuda", validation_fraction=0.2,
                                     n_iter_no_change=1, tol=1e9, max_epochs=50).fit(X)
    assert det.n_epochs_ == 2 and det.best_epoch_ == 1
    assert all(np.isfinite(det.validation_loss_curve_))


def test_explanations_and_pvalues_run_on_the_gpu_and_survive_a_cpu_load(detector, monkeypatch):
    det = clone(detector).set_params(device="cuda", validation_fraction=0.25).fit(X)
    rows = X[:50] + np.r_[np.zeros(25), np.full(25, 4.0)][:, None]
    attributions, pvalues = det.explain(rows), det.pvalues(rows)
    assert attributions.shape == rows.shape and np.all(attributions >= 0)
    assert np.all((pvalues > 0) & (pvalues <= 1))
    det.set_false_alarm_rate(0.1, at_most=True)
    np.testing.assert_array_equal(det.predict(rows) == -1, pvalues <= 0.1)
    payload = pickle.dumps(det)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        loaded = pickle.loads(payload)
    np.testing.assert_allclose(loaded.explain(rows), attributions, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(rows), det.predict(rows))
