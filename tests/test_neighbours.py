"""The nearest-neighbour part of the INN detectors' default score."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.neighbors import NearestNeighbors

from sklearn_flowod import (
    ContrastiveFlowDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.neighbours import MAX_REFERENCE_ROWS, kth_distance

RNG = np.random.RandomState(0)
X = RNG.normal(size=(300, 3))
X_NEW = np.vstack([RNG.normal(size=(40, 3)), RNG.normal(size=(10, 3)) * 3 + 4])
DETECTORS = [FlowDetector, ContrastiveFlowDetector, LikelihoodRatioDetector,
             InvertibleOneClassDetector]


@settings(max_examples=25, deadline=None)
@given(reference=arrays(np.float64, st.tuples(st.integers(7, 30), st.integers(1, 4)),
                        elements=st.integers(-3, 3).map(float)),
       k=st.integers(1, 5))
def test_kth_distance_is_the_kth_neighbour_of_scikit_learn(reference, k):
    # integer-valued rows: many ties and zero distances, where a leave-out rule shows
    queries = reference[::2] + 0.5
    search = NearestNeighbors(n_neighbors=k + 1).fit(reference)
    new = kth_distance(torch.as_tensor(queries), torch.as_tensor(reference), k).numpy()
    np.testing.assert_allclose(new, search.kneighbors(queries, k)[0][:, -1], atol=1e-6)
    loo = kth_distance(torch.as_tensor(reference), torch.as_tensor(reference), k, leave_out=True)
    np.testing.assert_allclose(loo.numpy(), search.kneighbors(reference)[0][:, -1], atol=1e-6)


@pytest.fixture(scope="module")
def fitted():
    return {cls: cls(max_epochs=3, random_state=0).fit(X) for cls in DETECTORS}


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_the_default_score_is_the_standardised_sum_of_the_three_parts(cls, fitted):
    det = fitted[cls]
    paper = cls(max_epochs=3, random_state=0, n_neighbors=None).fit(X)
    neighbours = det.neighbours_
    train_rows = neighbours.rows.numpy()
    assert train_rows.shape == (int(round(0.85 * X.shape[0])), X.shape[1])
    standardised = (X_NEW - det.mean_) / det.scale_
    search = NearestNeighbors(n_neighbors=5).fit(train_rows * det._input_divisor_)
    input_part = search.kneighbors(standardised)[0][:, -1] / det._input_divisor_
    parts = {0: paper.anomaly_score(X_NEW), 1: input_part}
    combined = det.anomaly_score(X_NEW)
    center, scale = neighbours.center.numpy(), neighbours.scale.numpy()
    # what remains once the paper's score and the input distances are taken out is
    # the latent distance, standardised
    latent = combined - sum((parts[i] - center[i]) / scale[i] for i in parts)
    if cls is InvertibleOneClassDetector:
        codes = det.latent_codes(X_NEW) * det.latent_scale_
        expected = NearestNeighbors(n_neighbors=5).fit(neighbours.codes.numpy()).kneighbors(
            codes)[0][:, -1]
        np.testing.assert_allclose(latent, (expected - center[2]) / scale[2], rtol=1e-6,
                                   atol=1e-6)
    assert np.all(latent * scale[2] + center[2] >= -1e-9)  # a distance


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_the_parts_are_standardised_by_the_reference_rows_left_out(cls, fitted):
    det = fitted[cls]
    rows = det.neighbours_.rows.numpy()
    loo = NearestNeighbors(n_neighbors=6).fit(rows).kneighbors(rows)[0][:, -1]
    q1, median, q3 = np.percentile(loo, [25, 50, 75])
    np.testing.assert_allclose(det.neighbours_.center[1].item(), median, rtol=1e-9)
    np.testing.assert_allclose(det.neighbours_.scale[1].item(), q3 - q1, rtol=1e-9)


def test_n_neighbors_none_keeps_the_papers_score():
    det = FlowDetector(max_epochs=3, random_state=0, n_neighbors=None).fit(X)
    assert det.neighbours_ is None
    np.testing.assert_allclose(det.score_samples(X_NEW), det.log_density(X_NEW), rtol=1e-12)
    iocn = InvertibleOneClassDetector(max_epochs=3, random_state=0, n_neighbors=None).fit(X)
    assert iocn.offset_ == 0.0


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_auto_threshold_flags_few_new_normal_rows_and_the_far_ones(cls, fitted):
    det = fitted[cls]
    fresh = np.random.RandomState(1).normal(size=(2000, 3))
    assert (det.predict(fresh) == -1).mean() < 0.1
    assert np.all(det.predict(X_NEW[-10:] + 6) == -1)


def test_the_reference_is_capped_and_scores_do_not_depend_on_batches():
    rows = np.random.RandomState(2).normal(size=(MAX_REFERENCE_ROWS + 50, 2))
    det = FlowDetector(max_epochs=1, validation_fraction=None, random_state=0).fit(rows)
    assert det.neighbours_.rows.shape[0] == MAX_REFERENCE_ROWS
    expected = det.anomaly_score(X_NEW[:, :2])
    with sklearn.config_context(working_memory=1):  # batches of a few rows
        np.testing.assert_allclose(det.anomaly_score(X_NEW[:, :2]), expected, rtol=1e-10)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_the_reference_rows_survive_pickling(cls, fitted):
    det = fitted[cls]
    loaded = pickle.loads(pickle.dumps(det))
    assert loaded.neighbours_.rows.device.type == "cpu"
    np.testing.assert_array_equal(loaded.anomaly_score(X_NEW), det.anomaly_score(X_NEW))


def test_one_feature_and_few_rows_still_score():
    det = FlowDetector(max_epochs=2, random_state=0).fit(X[:4, :1])
    assert det.neighbours_.n_neighbors == 2  # fewer training rows than neighbours asked
    assert np.all(np.isfinite(det.anomaly_score(X_NEW[:, :1])))
