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
from sklearn_flowod.neighbours import GROUP_SIZE, MAX_REFERENCE_ROWS, ExactNeighbours

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
    index = ExactNeighbours(torch.as_tensor(reference))
    new = index.kth_distance(torch.as_tensor(queries), k).numpy()
    np.testing.assert_allclose(new, search.kneighbors(queries, k)[0][:, -1], atol=1e-6)
    loo = index.kth_distance(torch.as_tensor(reference), k, leave_out=True)
    np.testing.assert_allclose(loo.numpy(), search.kneighbors(reference)[0][:, -1], atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(n_reference=st.integers(GROUP_SIZE - 5, 5 * GROUP_SIZE + 7),
       n_features=st.sampled_from([2, 30, 200]), k=st.integers(1, 8),
       offset=st.sampled_from([0.0, 1e3]), seed=st.integers(0, 2**16))
def test_the_float32_search_returns_float64_exact_distances(n_reference, n_features, k, offset,
                                                            seed):
    # correlated rows, some far from the origin (where float32 products lose digits),
    # over group counts that do not divide the reference
    rng = np.random.RandomState(seed)
    mixing = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
    reference = rng.normal(size=(n_reference, n_features)) @ mixing + offset
    queries = rng.normal(size=(300, n_features)) @ mixing * 1.5 + offset
    # from coordinate differences: scikit-learn's |x|^2 + |y|^2 - 2 x.y loses digits far out
    differences = queries[:, None, :] - reference[None, :, :]
    squared = np.einsum("qrd,qrd->qr", differences, differences)
    expected = np.sqrt(np.sort(squared, axis=1)[:, k - 1])
    got = ExactNeighbours(torch.as_tensor(reference)).kth_distance(torch.as_tensor(queries), k)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_a_distance_does_not_depend_on_the_rows_batched_with_it():
    rng = np.random.RandomState(3)
    index = ExactNeighbours(torch.as_tensor(rng.normal(size=(700, 30))))
    queries = torch.as_tensor(rng.normal(size=(1500, 30)))
    whole = index.kth_distance(queries, 5)
    one_by_one = torch.cat([index.kth_distance(queries[i:i + 1], 5) for i in range(0, 1500, 7)])
    np.testing.assert_array_equal(one_by_one.numpy(), whole[::7].numpy())


@pytest.fixture(scope="module")
def fitted():
    return {cls: cls(max_epochs=3, random_state=0).fit(X) for cls in DETECTORS}


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_the_default_score_is_the_standardised_sum_of_the_three_parts(cls, fitted):
    det = fitted[cls]
    paper = cls(max_epochs=3, random_state=0, n_neighbors=None).fit(X)
    neighbours = det.neighbours_
    train_rows = neighbours.inputs.rows.numpy()
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
        expected = NearestNeighbors(n_neighbors=5).fit(neighbours.codes.rows.numpy()).kneighbors(
            codes)[0][:, -1]
        np.testing.assert_allclose(latent, (expected - center[2]) / scale[2], rtol=1e-6,
                                   atol=1e-6)
    assert np.all(latent * scale[2] + center[2] >= -1e-9)  # a distance


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_the_parts_are_standardised_by_the_reference_rows_left_out(cls, fitted):
    det = fitted[cls]
    rows = det.neighbours_.inputs.rows.numpy()
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
    assert det.neighbours_.n_reference == MAX_REFERENCE_ROWS
    expected = det.anomaly_score(X_NEW[:, :2])
    with sklearn.config_context(working_memory=1):  # batches of a few rows
        np.testing.assert_allclose(det.anomaly_score(X_NEW[:, :2]), expected, rtol=1e-10)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_the_reference_rows_survive_pickling(cls, fitted):
    det = fitted[cls]
    loaded = pickle.loads(pickle.dumps(det))
    assert loaded.neighbours_.inputs.rows.device.type == "cpu"
    np.testing.assert_array_equal(loaded.anomaly_score(X_NEW), det.anomaly_score(X_NEW))


def test_one_feature_and_few_rows_still_score():
    # fewer training rows than neighbours asked: as LocalOutlierFactor, warn and record
    # (the fewest rows fit takes: 5 to train on, 1 held out)
    with pytest.warns(UserWarning, match=r"n_neighbors=5 is not below the 5 reference rows of "
                      r"FlowDetector: n_neighbors_=4 is used"):
        det = FlowDetector(max_epochs=2, random_state=0).fit(X[:6, :1])
    assert det.n_neighbors_ == 4 and det.n_neighbors == 5
    assert np.all(np.isfinite(det.anomaly_score(X_NEW[:, :1])))


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_a_model_without_neighbours_holds_no_training_row(cls):
    # sentinel rows with values no other row has: the default model keeps them (standardised,
    # recoverable exactly with mean_ and scale_); with n_neighbors=None the pickle holds no
    # training row, whole or standardised, and none of the sentinel values
    rows = X.copy()
    rows[:5] = 31415.9265 + np.arange(15).reshape(5, 3)
    default = cls(max_epochs=2, random_state=0).fit(rows)
    unit = default.scale_ * default._input_divisor_
    stored = default.neighbours_.inputs.rows.numpy() * unit + default.mean_
    recovered = [np.isclose(stored, row, rtol=1e-12, atol=1e-9).all(axis=1).any() for row in rows]
    assert sum(recovered) == default.neighbours_.n_reference
    bare = cls(max_epochs=2, random_state=0, n_neighbors=None).fit(rows)
    assert bare.neighbours_ is None and bare.n_neighbors_ is None
    blob = pickle.dumps(bare)
    for row in rows:
        for values in (row, (row - bare.mean_) / bare.scale_):
            assert values.tobytes() not in blob
            assert values.astype(np.float32).tobytes() not in blob
    for value in rows[:5].ravel():
        assert np.float64(value).tobytes() not in blob
        assert np.float32(value).tobytes() not in blob


def test_repeated_reference_rows_count_as_often_as_they_occur():
    # discrete data: every reference row repeated; the k-th distance counts repeats
    rng = np.random.RandomState(4)
    reference = np.repeat(rng.randint(-3, 4, size=(150, 6)).astype(float), 3, axis=0)
    queries = np.vstack([reference[::40] + rng.normal(scale=1e-3, size=(12, 6)),
                         rng.normal(size=(20, 6)) * 1e4])
    differences = queries[:, None, :] - reference[None, :, :]
    squared = np.sort(np.einsum("qrd,qrd->qr", differences, differences), axis=1)
    index = ExactNeighbours(torch.as_tensor(reference))
    for k in (1, 3, 4, 5):
        got = index.kth_distance(torch.as_tensor(queries), k)
        np.testing.assert_allclose(got.numpy(), np.sqrt(squared[:, k - 1]), rtol=1e-12)
    loo = index.kth_distance(torch.as_tensor(reference), 3, leave_out=True)
    expected = NearestNeighbors(n_neighbors=4).fit(reference).kneighbors(reference)[0][:, -1]
    np.testing.assert_allclose(loo.numpy(), expected, atol=1e-9)


def test_rows_the_float32_ranking_cannot_certify_are_searched_again_exactly():
    # every reference row at nearly the same distance from the queries, closer together
    # than float32 rounding: no candidate set can be certified, the float64 search decides
    rng = np.random.RandomState(5)
    directions = rng.normal(size=(300, 6))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    reference = directions * (100 + rng.uniform(0, 1e-3, size=(300, 1)))
    queries = rng.normal(scale=1e-4, size=(50, 6))
    differences = queries[:, None, :] - reference[None, :, :]
    squared = np.sort(np.einsum("qrd,qrd->qr", differences, differences), axis=1)
    got = ExactNeighbours(torch.as_tensor(reference)).kth_distance(torch.as_tensor(queries), 5)
    np.testing.assert_allclose(got.numpy(), np.sqrt(squared[:, 4]), rtol=1e-12)


def test_the_working_bytes_per_row_count_the_known_anomalies_searches():
    from sklearn_flowod.neighbours import CANDIDATE_MARGIN, NeighbourScore

    rows, codes = torch.as_tensor(X), torch.as_tensor(X[:, :2])
    plain = NeighbourScore(rows, codes, n_neighbors=5)
    known = NeighbourScore(rows, codes, n_neighbors=5, known=rows[:4], known_codes=codes[:4])
    # the nearest known anomaly's candidates, in both spaces, beside the k-th neighbour's
    assert plain.row_bytes() == 8 * (5 + 1 + CANDIDATE_MARGIN) * (3 + 2)
    assert known.row_bytes() - plain.row_bytes() == 8 * (1 + CANDIDATE_MARGIN) * (3 + 2)
