"""GPU behaviour; skipped on machines without CUDA."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

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


def test_same_seed_same_scores_on_the_gpu(detector):
    a = clone(detector).set_params(device="cuda", random_state=1).fit(X)
    b = clone(detector).set_params(device="cuda", random_state=1).fit(X)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-5, atol=1e-6)


def test_missing_cuda_index_is_a_clear_error(detector):
    bad = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match="CUDA device"):
        clone(detector).set_params(device=bad).fit(X)
