"""The invertible one-class network reproduces the paper's behaviour."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import kstest
from sklearn.base import clone
from sklearn.datasets import make_moons

from sklearn_flowod import InvertibleOneClassDetector, base
from sklearn_flowod.detectors.invertible_one_class import cube_distance

from .conftest import SMALL_BUDGET


def _two_gaussians(n, seed):
    rng = np.random.RandomState(seed)
    centres = np.array([[-2.0, 0.0], [2.0, 0.0]])
    return centres[rng.randint(2, size=n)] + 0.5 * rng.normal(size=(n, 2))


TOYS = {
    "moons": lambda n, seed: make_moons(n, noise=0.05, random_state=seed)[0],
    "two_gaussians": _two_gaussians,
}


@pytest.fixture(scope="module", params=sorted(TOYS))
def toy_fit(request):
    make = TOYS[request.param]
    X_train, X_test = make(2000, 0), make(2000, 1)
    # the defaults with four push samples per row, as a less noisy push suits
    # the few, thin structures of a 2-D toy
    detector = InvertibleOneClassDetector(n_latent_samples=4, n_neighbors=None, random_state=0,
                                          device="cpu")
    detector.fit(X_train)
    return detector, X_train, X_test


def test_held_out_inliers_fall_inside_the_cube(toy_fit):
    detector, _, X_test = toy_fit
    assert np.mean(detector.predict(X_test) == 1) >= 0.90


def test_points_five_standard_deviations_away_fall_outside(toy_fit):
    detector, X_train, _ = toy_fit
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ring = np.c_[np.cos(angles), np.sin(angles)]
    far = X_train.mean(axis=0) + 5 * X_train.std(axis=0) * ring
    assert np.all(detector.predict(far) == -1)
    assert np.all(detector.anomaly_score(far) > 0)


def test_training_codes_are_close_to_uniform_on_the_cube(toy_fit):
    # training stops early on the held-out codes' distance to the uniform law,
    # not once the training rows fit it best; a standardised Gaussian's codes
    # (the untrained network) are further off than this
    detector, X_train, _ = toy_fit
    Z = detector.latent_codes(X_train)
    for k in range(Z.shape[1]):
        assert kstest(Z[:, k], "uniform", args=(-1, 2)).statistic < 0.15


def test_auto_threshold_is_the_cube_surface(toy_fit):
    detector, _, X_test = toy_fit
    Z = detector.latent_codes(X_test)
    outside = np.abs(Z).max(axis=1) > 1
    assert detector.offset_ == 0
    np.testing.assert_array_equal(detector.predict(X_test) == -1, outside)


@pytest.mark.parametrize("pull", ["max", "square"])
def test_the_pull_score_is_the_pull_function_of_the_codes(pull, blobs):
    X, _ = blobs
    # latent_score changes the score only, not training: with the same seed
    # both detectors hold the same network
    params = dict(pull=pull, n_neighbors=None, max_epochs=3, random_state=0, device="cpu")
    by_distance = InvertibleOneClassDetector(**params).fit(X)
    by_pull = InvertibleOneClassDetector(latent_score="pull", **params).fit(X)
    Z = by_pull.latent_codes(X)
    np.testing.assert_allclose(Z, by_distance.latent_codes(X))
    f = np.abs(Z).max(axis=1) if pull == "max" else np.square(Z).mean(axis=1)
    np.testing.assert_allclose(by_pull.anomaly_score(X), f, rtol=1e-10)
    if pull == "max":  # inside the cube the distance of eq. (3) is max_k |z_k| - 1
        inside = f < 1
        np.testing.assert_allclose(by_distance.anomaly_score(X)[inside], f[inside] - 1)
    # without the cube's surface as boundary, "auto" is Tukey's upper fence
    q1, q3 = np.percentile(by_pull.anomaly_score(X), [25, 75])
    assert by_pull.offset_ == pytest.approx(-(q3 + 1.5 * (q3 - q1)))


def test_cube_distance_matches_equations_2_to_4():
    import torch

    z = torch.tensor([[0.5, -0.2], [1.5, 0.0], [-2.0, 3.0], [1.0, 0.0]])
    # inside: max|z| - 1; outside: sum of excesses
    expected = torch.tensor([-0.5, 0.5, 3.0, 0.0])
    torch.testing.assert_close(cube_distance(z), expected)


def test_one_feature_is_padded_and_works():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(500, 1))
    det = InvertibleOneClassDetector(random_state=0, device="cpu", max_epochs=30).fit(X)
    assert det.latent_codes(X).shape == (500, 2)
    assert np.mean(det.predict(rng.normal(size=(500, 1))) == 1) > 0.8
    assert np.all(det.predict([[8.0], [-8.0]]) == -1)


@pytest.mark.parametrize("pull", ["max", "square"])
def test_every_pull_function_learns_a_boundary(pull, blobs):
    X, X_out = blobs
    det = InvertibleOneClassDetector(**{**SMALL_BUDGET, "max_epochs": 30}, pull=pull,
                                     random_state=0).fit(X)
    assert np.mean(det.predict(X_out) == -1) > 0.9
    assert np.mean(det.predict(X) == 1) > 0.5


@pytest.fixture(scope="module")
def small_fit():
    X = np.random.RandomState(0).normal(size=(300, 3))
    return InvertibleOneClassDetector(**SMALL_BUDGET, random_state=0).fit(X)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (5, 3), elements=st.floats(-1e6, 1e6)))
def test_scores_are_finite_for_large_finite_inputs(small_fit, X):
    assert np.all(np.isfinite(small_fit.score_samples(X)))
    assert np.all(np.isin(small_fit.predict(X), [-1, 1]))


def test_clone_keeps_every_parameter():
    det = InvertibleOneClassDetector(n_blocks=3, pull="square", n_latent_samples=2)
    assert clone(det).get_params() == det.get_params()


def test_an_int_max_epochs_trains_that_many_epochs(blobs):
    det = InvertibleOneClassDetector(**{**SMALL_BUDGET, "max_epochs": 4}, batch_size=100,
                                     validation_fraction=None, random_state=0)
    det.fit(blobs[0])
    # without a validation split nothing stops training early
    assert det.n_epochs_ == det.best_epoch_ == len(det.loss_curve_) == 4


def test_max_epochs_auto_stops_when_the_held_out_criterion_stops_improving(blobs):
    det = InvertibleOneClassDetector(**{**SMALL_BUDGET, "max_epochs": "auto"},
                                     n_iter_no_change=3, random_state=0).fit(blobs[0])
    # one check an epoch: training ends three checks after the best one
    assert det.n_epochs_ == det.best_epoch_ + 3 < base.AUTO_MAX_EPOCHS
    assert len(det.validation_loss_curve_) == det.n_epochs_
    curve = det.validation_loss_curve_
    assert min(curve[det.best_epoch_ :]) > curve[det.best_epoch_ - 1] - det.tol


def test_max_epochs_auto_without_early_stopping_trains_to_the_step_cap():
    # batches of 2 rows: epochs of 50 steps, the cap on steps comes first
    X = np.random.RandomState(0).normal(size=(100, 2))
    det = InvertibleOneClassDetector(n_blocks=1, hidden_size=4, max_epochs="auto",
                                     batch_size=2, validation_fraction=None,
                                     n_iter_no_change=None, device="cpu",
                                     random_state=0).fit(X)
    steps = min(base.AUTO_MAX_STEPS, base.AUTO_MAX_EPOCHS * 50)
    assert det.n_epochs_ == len(det.loss_curve_) == -(-steps // 50)

