"""What a pickled model keeps: its scoring constants, format, version and device."""

import pickle
import warnings

import numpy as np
import pytest
import torch

import sklearn_flowod
from sklearn_flowod import FlowDetector, InvertibleOneClassDetector
from sklearn_flowod._device import loadable_device
from sklearn_flowod._persistence import PERSISTENCE_FORMAT

from .conftest import SMALL_BUDGET

X = np.random.RandomState(0).normal(size=(60, 1))


@pytest.fixture(scope="module")
def flow_1d():
    return FlowDetector(**SMALL_BUDGET, random_state=0).fit(X)


def restored(detector, **changes):
    """A new detector loaded from ``detector``'s pickled state, with ``changes``."""
    state = {**detector.__getstate__(), **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del state[key]
    loaded = type(detector).__new__(type(detector))
    loaded.__setstate__(state)
    return loaded


def test_state_records_format_version_and_scoring_constants(flow_1d):
    state = flow_1d.__getstate__()
    assert state["_sklearn_flowod_format"] == PERSISTENCE_FORMAT
    assert state["_sklearn_flowod_version"] == sklearn_flowod.__version__
    assert state["_n_padding_nodes_"] == 24
    assert state["_input_divisor_"] == 1.0
    det = InvertibleOneClassDetector(**SMALL_BUDGET, random_state=0).fit(X)
    assert det.__getstate__()["_input_divisor_"] == 3.0


def test_scoring_reads_the_constants_of_the_fitted_state(flow_1d):
    expected = flow_1d.score_samples(X)
    np.testing.assert_array_equal(restored(flow_1d).score_samples(X), expected)
    fewer_nodes = restored(flow_1d, _n_padding_nodes_=4).score_samples(X)
    assert not np.array_equal(fewer_nodes, expected)


def test_unknown_format_is_a_clear_error(flow_1d):
    unknown = PERSISTENCE_FORMAT + 98
    with pytest.raises(ValueError, match=f"persistence format {unknown}.*upgrade sklearn_flowod"):
        restored(flow_1d, _sklearn_flowod_format=PERSISTENCE_FORMAT + 98)


def test_other_version_with_the_same_format_loads_silently(flow_1d):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = restored(flow_1d, _sklearn_flowod_version="0.0.1")
    np.testing.assert_array_equal(loaded.score_samples(X), flow_1d.score_samples(X))


def test_state_without_format_takes_the_installed_constants(flow_1d):
    loaded = restored(flow_1d, _sklearn_flowod_format=None, _sklearn_flowod_version=None,
                      _n_padding_nodes_=None, _input_divisor_=None)
    np.testing.assert_array_equal(loaded.score_samples(X), flow_1d.score_samples(X))


def test_missing_cuda_index_loads_on_an_available_device_with_warning(flow_1d):
    with pytest.warns(UserWarning, match="fitted on cuda:7"):
        loaded = restored(flow_1d, device_=torch.device("cuda:7"))
    if torch.cuda.is_available():
        assert loaded.device_ == torch.device("cuda:0")
    else:
        assert loaded.device_ == torch.device("cpu")
    np.testing.assert_allclose(loaded.score_samples(X), flow_1d.score_samples(X), rtol=1e-6)


def test_missing_cuda_index_falls_back_to_the_first_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.warns(UserWarning, match="only 1 CUDA device.*loaded on cuda:0"):
        assert loadable_device(torch.device("cuda:1")) == torch.device("cuda:0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loadable_device(torch.device("cuda:0")) == torch.device("cuda:0")
        assert loadable_device(torch.device("cpu")) == torch.device("cpu")


def test_cuda_without_cuda_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert loadable_device(torch.device("cuda:1")) == torch.device("cpu")


def test_a_default_model_saved_in_format_1_loads_and_scores_the_same():
    from sklearn_flowod.neighbours import NeighbourScore

    det = FlowDetector(**SMALL_BUDGET, random_state=0).fit(X)
    neighbours = det.neighbours_
    old = object.__new__(NeighbourScore)  # the format-1 layout of the neighbour score
    old.__dict__ = {"rows": neighbours.inputs.rows, "codes": neighbours.codes.rows,
                    "n_neighbors": neighbours.n_neighbors, "center": neighbours.center,
                    "scale": neighbours.scale}
    loaded = restored(det, _sklearn_flowod_format=1, n_neighbors_=None,
                      neighbours_=pickle.loads(pickle.dumps(old)))
    assert loaded.n_neighbors_ == det.n_neighbors_
    np.testing.assert_array_equal(loaded.score_samples(X), det.score_samples(X))
