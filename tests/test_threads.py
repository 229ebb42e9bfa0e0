"""The thread policy: torch threads chosen from the work (or ``n_jobs``) for
the duration of a fit or a scoring pass, the caller's setting restored."""

import contextlib
import os
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from joblib import effective_n_jobs
from sklearn.base import clone

from sklearn_flowod import DeepSVDDDetector, FlowDetector
from sklearn_flowod._engine.threads import (
    MACS_PER_THREAD,
    PROBE_MACS,
    ThreadProbe,
    n_threads,
    thread_probes,
    torch_threads,
    work_macs,
)

from .conftest import SMALL_BUDGET, SMALL_SVDD, small_detectors

CALLER_THREADS = min(2, os.cpu_count() or 1)

X = np.random.RandomState(0).normal(size=(200, 4))


@contextlib.contextmanager
def _caller_allows(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def caller_threads():
    """The caller allows two threads where the machine has them (restored after)."""
    with _caller_allows(CALLER_THREADS) as threads:
        yield threads


def _thread_recording(base):
    """A detector that records torch's thread count in its loss and its score."""

    class Recording(base):
        def _loss(self, module, batch, generator):
            self.fit_threads_.add(torch.get_num_threads())
            return super()._loss(module, batch, generator)

        def _score_batch(self, module, batch):
            self.score_threads_.add(torch.get_num_threads())
            return super()._score_batch(module, batch)

        def fit(self, X, y=None):
            self.fit_threads_, self.score_threads_ = set(), set()
            return super().fit(X, y)

    Recording.__name__ = base.__name__
    return Recording


# --------------------------------------------------------------------------- #
# The policy
# --------------------------------------------------------------------------- #
@settings(max_examples=50, deadline=None)
@given(macs=st.floats(0.0, MACS_PER_THREAD, exclude_max=True))
def test_small_work_runs_on_one_thread(macs):
    with _caller_allows(CALLER_THREADS):
        assert n_threads(None, macs) == 1


@settings(max_examples=50, deadline=None)
@given(macs=st.floats(0.0, 1e30))
def test_threads_grow_with_the_work_up_to_the_callers_setting(macs):
    with _caller_allows(CALLER_THREADS):
        threads = n_threads(None, macs)
        assert 1 <= threads <= torch.get_num_threads() == CALLER_THREADS
        assert threads <= n_threads(None, 2 * macs)


def test_huge_work_gets_every_thread_the_caller_allows(caller_threads):
    assert n_threads(None, 1e30) == torch.get_num_threads()
    torch.set_num_threads(1)
    assert n_threads(None, 1e30) == 1  # e.g. inside a joblib worker


@pytest.mark.parametrize("n_jobs", [-1, -2, 1, 2, 3])
def test_an_int_n_jobs_follows_joblib(n_jobs):
    for macs in (0.0, 1e30):
        assert n_threads(n_jobs, macs) == effective_n_jobs(n_jobs)
    assert n_threads(1, 1e30) == 1


def test_work_is_counted_per_parameter_and_row():
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    n_parameters = 4 * 8 + 8 + 8 * 2 + 2
    assert work_macs(module, 10) == 10 * n_parameters
    assert work_macs(module, 10, passes=3) == 30 * n_parameters


def test_torch_threads_restores_the_callers_setting_also_on_errors(caller_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError
    assert torch.get_num_threads() == caller_threads
    with torch_threads(caller_threads):
        assert torch.get_num_threads() == caller_threads


@pytest.mark.skipif(CALLER_THREADS < 2, reason="needs two processors")
@pytest.mark.parametrize("slow", [1, 2])
def test_the_probe_keeps_the_thread_count_whose_steps_were_faster(caller_threads, slow):
    probe = ThreadProbe((1, 2))
    probe.on_train_begin(None)
    seen = []
    for _ in range(12):
        probe.on_step_begin(None)
        seen.append(torch.get_num_threads())
        time.sleep(0.03 if torch.get_num_threads() == slow else 0.0)  # the step's work
    assert set(seen[:7]) == {1, 2}  # warm-up and three timed steps of each
    assert set(seen[7:]) == {3 - slow}


def test_torch_threads_restores_what_a_probe_inside_changed(caller_threads):
    with torch_threads(caller_threads):
        probe = ThreadProbe((1, caller_threads))
        probe.on_train_begin(None)
        probe.on_step_begin(None)
        torch.set_num_threads(1)
    assert torch.get_num_threads() == caller_threads


def test_only_large_cpu_fits_without_n_jobs_probe(caller_threads):
    cpu = torch.device("cpu")
    assert thread_probes(None, PROBE_MACS / 2, cpu) == []
    assert thread_probes(1, PROBE_MACS, cpu) == []
    assert thread_probes(None, PROBE_MACS, torch.device("meta")) == []
    if caller_threads > 1:
        (probe,) = thread_probes(None, PROBE_MACS, cpu)
        assert set(probe.schedule) == {1, caller_threads}
    torch.set_num_threads(1)  # e.g. inside a joblib worker
    assert thread_probes(None, 1e30, cpu) == []


@pytest.mark.skipif(CALLER_THREADS < 2, reason="needs two processors")
def test_a_wide_fit_probes_one_thread_and_the_callers_then_restores(caller_threads):
    X_wide = np.random.RandomState(0).normal(size=(600, 128))
    det = _thread_recording(FlowDetector)(max_epochs=3, validation_fraction=None,
                                          random_state=0).fit(X_wide)
    assert det.fit_threads_ == {1, caller_threads}
    assert torch.get_num_threads() == caller_threads


# --------------------------------------------------------------------------- #
# The detectors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("detector", small_detectors(), ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("n_jobs", [None, 1])
def test_fit_and_scoring_restore_the_callers_threads(caller_threads, detector, n_jobs):
    det = clone(detector).set_params(n_jobs=n_jobs, max_epochs=2).fit(X)
    assert torch.get_num_threads() == caller_threads
    det.score_samples(X)
    assert torch.get_num_threads() == caller_threads


@pytest.mark.parametrize(
    ("base", "params"), [(FlowDetector, SMALL_BUDGET), (DeepSVDDDetector, SMALL_SVDD)],
    ids=["FlowDetector", "DeepSVDDDetector"],
)
def test_n_jobs_1_trains_and_scores_on_one_thread(caller_threads, base, params):
    det = _thread_recording(base)(**params, n_jobs=1, random_state=0).fit(X)
    assert det.fit_threads_ == {1}
    det.score_threads_.clear()
    det.score_samples(X)
    assert det.score_threads_ == {1}


def test_small_networks_train_on_one_thread_by_default(caller_threads):
    det = _thread_recording(FlowDetector)(**SMALL_BUDGET, random_state=0).fit(X)
    assert det.fit_threads_ == {1}


@pytest.mark.skipif(CALLER_THREADS < 2, reason="needs two processors")
def test_an_int_n_jobs_sets_the_threads_of_fit_and_scoring(caller_threads):
    det = _thread_recording(FlowDetector)(**SMALL_BUDGET, n_jobs=2, random_state=0).fit(X)
    assert det.fit_threads_ == {2}
    det.score_threads_.clear()
    det.score_samples(X)
    assert det.score_threads_ == {2}
    assert torch.get_num_threads() == caller_threads


def test_n_jobs_does_not_change_the_model(caller_threads):
    # one thread or two: the same float32 training up to the last bits
    one = FlowDetector(**SMALL_BUDGET, n_jobs=1, random_state=0).fit(X)
    every = FlowDetector(**SMALL_BUDGET, n_jobs=-1, random_state=0).fit(X)
    np.testing.assert_allclose(every.score_samples(X), one.score_samples(X),
                               rtol=1e-4, atol=1e-4)


def test_n_jobs_is_validated():
    with pytest.raises(ValueError, match="n_jobs"):
        FlowDetector(**SMALL_BUDGET, n_jobs="all").fit(X)


@pytest.mark.skipif(CALLER_THREADS < 2, reason="needs two processors")
def test_a_wide_network_scores_on_the_callers_threads(caller_threads):
    # its mixing matrices times a scoring batch are long products: threads pay off
    wide = np.random.RandomState(0).normal(size=(200, 256))
    det = _thread_recording(FlowDetector)(max_epochs=1, n_blocks=2, n_neighbors=None,
                                          random_state=0).fit(wide)
    det.score_threads_.clear()
    det.score_samples(np.tile(wide, (10, 1)))
    assert det.score_threads_ == {caller_threads}
    narrow = _thread_recording(FlowDetector)(**SMALL_BUDGET, n_neighbors=None,
                                             random_state=0).fit(X)
    narrow.score_threads_.clear()
    narrow.score_samples(np.tile(X, (10, 1)))
    assert narrow.score_threads_ == {1}
