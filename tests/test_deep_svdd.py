"""Deep SVDD: no bias, no collapse, the soft boundary's nu-property, pretraining."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from torch import nn

from sklearn_flowod import DeepSVDDDetector
from sklearn_flowod._random import derive_seed
from sklearn_flowod.callbacks import Callback
from sklearn_flowod.networks import build_bias_free_mlp, with_min_rows

SMALL = {"hidden_sizes": (32,), "representation_size": 8, "device": "cpu"}


def _ring_problem(seed=0, n_train=600, n_test=200, dim=4):
    """Inliers: standard normal. Outliers: a shell of radius 5 around them."""
    rng = np.random.RandomState(seed)
    X_train = rng.normal(size=(n_train, dim))
    X_in = rng.normal(size=(n_test, dim))
    directions = rng.normal(size=(n_test, dim))
    X_out = 5.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return X_train, X_in, X_out


@settings(max_examples=25, deadline=None)
@given(
    n_features=st.integers(1, 12),
    hidden_sizes=st.lists(st.integers(1, 32), max_size=4),
    representation_size=st.integers(1, 16),
    seed=st.integers(0, 2**16),
)
def test_encoder_has_no_bias_and_no_bounded_activation(
    n_features, hidden_sizes, representation_size, seed
):
    det = DeepSVDDDetector(hidden_sizes=tuple(hidden_sizes),
                           representation_size=representation_size)
    module = det._build_module(det._module_config(n_features), seed=seed)
    names = [name for name, _ in module.named_parameters()]
    assert not any("bias" in name for name in names)
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            assert layer.bias is None
        assert not isinstance(layer, nn.Sigmoid | nn.Tanh | nn.Hardtanh | nn.Softsign)
    n_linear = sum(isinstance(layer, nn.Linear) for layer in module.modules())
    assert n_linear == len(hidden_sizes) + 1
    # a bias-free, positively homogeneous network maps 0 to 0
    with torch.no_grad():
        assert torch.equal(module(torch.zeros(3, n_features)), torch.zeros(3, representation_size))


@settings(max_examples=20, deadline=None)
@given(
    hidden_sizes=st.lists(st.integers(1, 16), max_size=3),
    n_rows=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_rows_score_alike_alone_and_in_a_batch(hidden_sizes, n_rows, seed):
    mlp = build_bias_free_mlp(5, hidden_sizes, 3, seed=seed).to(torch.float64)
    x = torch.randn(n_rows, 5, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    with torch.no_grad():
        whole = with_min_rows(mlp, x)
        torch.testing.assert_close(whole, mlp(x))
        # each row gives the same result alone as in the batch, up to float64
        # rounding (the kernels of matrix products depend on the row count)
        alone = torch.cat([with_min_rows(mlp, x[i : i + 1]) for i in range(n_rows)])
        torch.testing.assert_close(alone, whole, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("objective", ["one-class", "soft-boundary"])
def test_training_does_not_collapse_and_separates_outliers(objective):
    X_train, X_in, X_out = _ring_problem()
    det = DeepSVDDDetector(objective=objective, max_epochs=50, random_state=0, **SMALL)
    det.fit(X_train)
    assert not any("bias" in name for name, _ in det.module_.named_parameters())
    # the loss went down, yet the representation did not shrink to the centre
    assert det.loss_curve_[-1] < det.loss_curve_[0]
    Z = det.representation(X_train)
    dist = np.sum((Z - det.center_) ** 2, axis=1)
    assert np.median(dist) > 1e-3 * np.sum(det.center_**2)
    assert dist.std() > 0.1 * dist.mean()
    assert np.ptp(Z, axis=0).max() > 1e-3
    # held-out outliers are farther from c than held-out inliers
    scores = det.anomaly_score(np.vstack([X_in, X_out]))
    y = np.r_[np.zeros(len(X_in)), np.ones(len(X_out))]
    assert roc_auc_score(y, scores) >= 0.95


def test_soft_boundary_leaves_about_nu_outside_the_sphere():
    X_train, _, _ = _ring_problem()
    det = DeepSVDDDetector(objective="soft-boundary", nu=0.1, max_epochs=30,
                           warm_up_epochs=5, random_state=0, **SMALL).fit(X_train)
    dist = np.sum((det.representation(X_train) - det.center_) ** 2, axis=1)
    outside = np.mean(dist > det.radius_**2)
    assert 0.05 <= outside <= 0.15
    # "auto": the sphere is the boundary
    assert det.offset_ == 0.0
    assert np.mean(det.predict(X_train) == -1) == pytest.approx(outside, abs=0.01)
    np.testing.assert_allclose(det.anomaly_score(X_train), dist - det.radius_**2, atol=1e-9)


class _RadiusRecorder(Callback):
    def __init__(self):
        self.radii = []

    def on_check(self, state):
        radius = getattr(state.module, "radius", None)  # the autoencoder has none
        if radius is not None:
            self.radii.append(float(radius))


class _RecordingSVDD(DeepSVDDDetector):
    """Records the radius after every epoch of the main training loop."""

    def _callbacks(self):
        # after the detector's own callbacks, which update the radius
        self.recorder_ = _RadiusRecorder()
        return [*super()._callbacks(), self.recorder_]


def test_soft_boundary_radius_starts_after_the_warm_up():
    X_train, _, _ = _ring_problem(n_train=200)
    det = _RecordingSVDD(objective="soft-boundary", max_epochs=6, warm_up_epochs=4,
                         random_state=0, **SMALL).fit(X_train)
    radii = det.recorder_.radii
    assert len(radii) == det.n_epochs_ == 6
    assert radii[:3] == [0.0, 0.0, 0.0]
    assert all(r > 0 for r in radii[3:])


def test_soft_boundary_with_pretraining_updates_the_radius_after_the_warm_up():
    X_train, _, _ = _ring_problem(n_train=200)
    det = _RecordingSVDD(objective="soft-boundary", max_epochs=4, warm_up_epochs=2,
                         pretrain_epochs=3, random_state=0, **SMALL).fit(X_train)
    assert len(det.pretrain_loss_curve_) == 3
    assert det.recorder_.radii[:1] == [0.0] and all(r > 0 for r in det.recorder_.radii[1:])
    assert det.radius_ > 0


def test_one_class_auto_threshold_is_the_nu_quantile():
    X_train, _, _ = _ring_problem()
    det = DeepSVDDDetector(nu=0.2, max_epochs=10, random_state=0, **SMALL).fit(X_train)
    scores = det.anomaly_score(X_train)
    assert det.offset_ == pytest.approx(-det.radius_**2)
    assert np.mean(det.predict(X_train) == -1) == pytest.approx(0.2, abs=0.01)
    assert np.all(scores >= 0)  # one-class: the plain squared distance


@pytest.mark.parametrize("trim_fraction", [0.1, 0.0])
def test_trimming_keeps_a_minority_of_training_outliers_out_of_the_sphere(trim_fraction):
    # 7% of the training rows form a cluster far from the rest: the trimmed
    # objective leaves them out of the mean (they end outside the sphere); the
    # plain one (Ruff et al.'s Eq. 4) pulls them in with the inliers
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((300, 4)), 5.0 + rng.standard_normal((24, 4))])
    det = DeepSVDDDetector(trim_fraction=trim_fraction, random_state=0, device="cpu").fit(X)
    auroc = roc_auc_score(np.r_[np.zeros(300), np.ones(24)], det.anomaly_score(X))
    if trim_fraction:
        assert auroc > 0.99 and np.all(det.predict(X[300:]) == -1)
    else:
        assert auroc < 0.8


def test_center_coordinates_are_kept_away_from_zero():
    X_train, _, _ = _ring_problem(n_train=200)
    det = DeepSVDDDetector(max_epochs=1, center_eps=0.5, random_state=0, **SMALL).fit(X_train)
    assert np.all(np.abs(det.center_) >= 0.5)
    np.testing.assert_array_equal(det.center_, det.module_.center.numpy())


@pytest.mark.parametrize("pretrain_epochs", [0, 3])
def test_center_is_the_mean_of_the_outputs_before_training(pretrain_epochs):
    X_train, _, _ = _ring_problem(n_train=200)
    det = DeepSVDDDetector(max_epochs=1, center_eps=0.0, pretrain_epochs=pretrain_epochs,
                           random_state=0, **SMALL)
    initial = det._build_module(det._module_config(4), seed=derive_seed(0))
    captured = {}
    original = det._initial_center

    def spy(module, X):
        center = original(module, X)
        with torch.no_grad():
            captured["mean"] = module(X).mean(dim=0)
            captured["weight"] = module.encoder[0].weight.clone()
        return center

    det._initial_center = spy
    det.fit(X_train)
    torch.testing.assert_close(torch.as_tensor(det.center_, dtype=torch.float32),
                               captured["mean"])
    # with pretraining, c comes from the pretrained encoder (its weights moved)
    moved = not torch.equal(captured["weight"], initial.encoder[0].weight)
    assert moved == (pretrain_epochs > 0)
    assert len(det.pretrain_loss_curve_) == pretrain_epochs


def test_pretraining_trains_the_encoder_before_the_centre():
    X_train, X_in, X_out = _ring_problem()
    plain = DeepSVDDDetector(max_epochs=5, random_state=0, **SMALL).fit(X_train)
    pre = DeepSVDDDetector(max_epochs=5, pretrain_epochs=10, random_state=0, **SMALL)
    pre.fit(X_train)
    assert plain.pretrain_loss_curve_ == []
    assert len(pre.pretrain_loss_curve_) == 10
    assert pre.pretrain_loss_curve_[-1] < pre.pretrain_loss_curve_[0]
    assert not np.array_equal(pre.center_, plain.center_)
    # only the encoder is kept
    assert set(pre.module_.state_dict()) == set(plain.module_.state_dict())
    scores = pre.anomaly_score(np.vstack([X_in, X_out]))
    assert np.all(np.isfinite(scores))


@settings(max_examples=10, deadline=None)
@given(
    objective=st.sampled_from(["one-class", "soft-boundary"]),
    nu=st.floats(0.01, 1.0),
    n_features=st.integers(1, 6),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 1000),
)
def test_scores_are_finite(objective, nu, n_features, scale, seed):
    X = scale * np.random.RandomState(seed).standard_t(3, size=(60, n_features))
    det = DeepSVDDDetector(objective=objective, nu=nu, max_epochs=3, warm_up_epochs=1,
                           random_state=seed, **SMALL).fit(X)
    assert np.all(np.isfinite(det.score_samples(X)))
    assert np.isfinite(det.offset_) and det.radius_ >= 0


@pytest.mark.parametrize("hidden_sizes", [(0,), (8, -1), ((4, 4),), (2.5,)])
def test_bad_hidden_sizes(hidden_sizes):
    with pytest.raises(ValueError, match="hidden_sizes"):
        DeepSVDDDetector(hidden_sizes=hidden_sizes, **{"device": "cpu"}).fit(np.eye(5))
