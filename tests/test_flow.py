"""FlowDetector: a maximum-likelihood normalizing flow."""

import copy

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sklearn_flowod import FlowDetector

FAST = {"n_blocks": 4, "hidden_size": 32, "device": "cpu", "random_state": 0}


@pytest.fixture(scope="module")
def gaussian_2d():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(1000, 2)) * [3.0, 0.5] + [10.0, -2.0]
    det = FlowDetector(max_epochs=25, n_neighbors=None, **FAST).fit(X)
    return X, det


def test_learns_gaussian_log_density(gaussian_2d):
    X, det = gaussian_2d
    rng = np.random.RandomState(1)
    X_test = rng.normal(size=(500, 2)) * [3.0, 0.5] + [10.0, -2.0]
    z = (X_test - [10.0, -2.0]) / [3.0, 0.5]
    true = -0.5 * (z**2).sum(axis=1) - np.log(2 * np.pi) - np.log(3.0 * 0.5)
    learned = det.log_density(X_test)
    # the densities are in the input space: the standardisation's Jacobian is included
    assert abs(np.mean(learned - true)) < 0.15
    assert np.corrcoef(learned, true)[0, 1] > 0.95


def test_scores_are_negative_log_density(gaussian_2d):
    X, det = gaussian_2d
    np.testing.assert_allclose(det.anomaly_score(X[:50]), -det.log_density(X[:50]))
    np.testing.assert_allclose(det.score_samples(X[:50]), det.log_density(X[:50]))


def test_detects_far_points(gaussian_2d):
    X, det = gaussian_2d
    X_out = np.array([[10.0, 2.0], [25.0, -2.0], [0.0, 0.0]])
    y = np.r_[np.ones(200), -np.ones(3)]
    assert roc_auc_score(y, det.score_samples(np.r_[X[:200], X_out])) == 1.0
    assert (det.predict(X_out) == -1).all()
    # Tukey's fence flags a small fraction of the Gaussian training data
    assert 0.001 < np.mean(det.predict(X) == -1) < 0.05


def test_one_feature_density_integrates_to_one():
    rng = np.random.RandomState(0)
    X = rng.normal(loc=5.0, scale=2.0, size=(1000, 1))
    det = FlowDetector(max_epochs=25, **FAST).fit(X)
    grid = np.linspace(-10, 20, 3001)[:, None]
    density = np.exp(det.log_density(grid))
    # the padding column's density is removed: a density of the single feature
    assert np.trapezoid(density, grid[:, 0]) == pytest.approx(1.0, abs=0.1)
    true = np.exp(-0.5 * ((grid[:, 0] - 5.0) / 2.0) ** 2) / np.sqrt(2 * np.pi * 4.0)
    assert 0.5 * np.trapezoid(np.abs(density - true), grid[:, 0]) < 0.1


def test_validation_early_stopping_restores_best_epoch():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    det = FlowDetector(max_epochs=60, n_iter_no_change=3, tol=0.0, learning_rate=1e-2,
                       **FAST).fit(X)
    assert det.best_epoch_ == int(np.argmin(det.validation_loss_curve_)) + 1
    assert det.n_epochs_ == det.best_epoch_ + 3 < 60


class _KeepingFlow(FlowDetector):
    """Keeps the validation rows and a copy of the trained float32 flow."""

    def _after_training(self, module, X_train, X_val):
        super()._after_training(module, X_train, X_val)
        self.float32_module_ = copy.deepcopy(module)
        self.X_val_ = X_val


def test_the_validation_loss_is_the_likelihood_through_the_folded_flow():
    X = np.random.RandomState(0).normal(size=(300, 4))
    det = _KeepingFlow(max_epochs=4, n_iter_no_change=None, **FAST).fit(X)
    module, X_val = det.float32_module_, det.X_val_
    # the last check saw the final weights; FrEIA's own forward pass, with gradients
    z, log_jac_det = module(X_val, jac=True)
    log_p = -0.5 * z.square().sum(dim=1) - 0.5 * 4 * np.log(2 * np.pi) + log_jac_det
    nll = float(-log_p.mean() / 4)
    assert len(det.validation_loss_curve_) == 4
    assert det.validation_loss_curve_[-1] == pytest.approx(nll, rel=1e-5, abs=1e-6)
