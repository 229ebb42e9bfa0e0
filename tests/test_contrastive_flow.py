"""ContrastiveFlowDetector: eq. (3) of the contrastive-flow paper, clamped (5.2.1)."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_flowod import ContrastiveFlowDetector, FeaturePermutation, FlowDetector, UniformBox

#: Enough training to reproduce the paper's toy figures (about 1,000 steps).
TOY = {"n_neighbors": None, "max_epochs": 60, "learning_rate": 3e-3, "validation_fraction": None,
       "device": "cpu", "random_state": 0}
SMALL = {"n_blocks": 2, "hidden_size": 16, "max_epochs": 5, "device": "cpu", "random_state": 0}


def total_variation(density, target, dx):
    density = density / (density.sum() * dx)
    target = target / (target.sum() * dx)
    return 0.5 * np.abs(density - target).sum() * dx


@pytest.fixture(scope="module")
def figure_3():
    """Fig. 3: p = N(0, 1) inliers, q = N(1, 2) auxiliary (2 is the variance)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(4000, 1))
    X_aux = rng.normal(1.0, math.sqrt(2.0), size=(4001, 1))
    contrastive = ContrastiveFlowDetector(**TOY).fit(X, X_aux=X_aux)
    plain = FlowDetector(**TOY).fit(X)
    return contrastive, plain


def test_learns_the_positive_difference_in_1d(figure_3):
    contrastive, plain = figure_3
    grid = np.linspace(-6.0, 8.0, 1401)
    dx = grid[1] - grid[0]
    target = np.clip(norm.pdf(grid) - norm.pdf(grid, 1.0, math.sqrt(2.0)), 0.0, None)
    learned = np.exp(contrastive.score_samples(grid[:, None]))
    # a density of the single feature (the padding column is integrated out)
    assert learned.sum() * dx == pytest.approx(1.0, abs=0.05)
    assert total_variation(learned, target, dx) < 0.1
    assert total_variation(np.exp(plain.score_samples(grid[:, None])), target, dx) > 0.2


def test_auto_clamp_lies_below_the_inliers_density(figure_3):
    contrastive, _ = figure_3
    X = np.random.RandomState(0).normal(size=(4000, 1))
    with torch.inference_mode():
        batch = contrastive._to_model_input(X, torch.float64, torch.Generator().manual_seed(0))
        from sklearn_flowod.detectors.flow import flow_log_density

        log_p = flow_log_density(contrastive.module_, batch).numpy()
    # the clamp lies well below the bulk of the inliers' log-density (about 20% of
    # p's mass lies where q > p, x > 0.84, and is pushed down to the clamp)
    assert np.quantile(log_p, 0.25) - 1.0 > contrastive.clamp_ > np.quantile(log_p, 0.01) - 1.0
    assert not hasattr(contrastive, "_aux_data")  # X_aux is not kept in the model


@pytest.fixture(scope="module")
def figure_4():
    """Fig. 4: inliers N([1, 1], I), auxiliary N(0, I)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(3000, 2)) + 1.0
    X_aux = rng.normal(size=(3001, 2))
    mixed = np.r_[X_aux[:1500], rng.normal(size=(1501, 2)) + 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        contrastive = ContrastiveFlowDetector(**{**TOY, "max_epochs": 30}).fit(X, X_aux=X_aux)
        contaminated = ContrastiveFlowDetector(**{**TOY, "max_epochs": 30}).fit(X, X_aux=mixed)
    plain = FlowDetector(**{**TOY, "max_epochs": 30}).fit(X)
    X_test = np.r_[rng.normal(size=(500, 2)) + 1.0, rng.normal(size=(500, 2))]
    y_test = np.r_[np.ones(500), -np.ones(500)]
    return contrastive, contaminated, plain, X_test, y_test


def test_highest_density_near_the_inliers_in_2d(figure_4):
    contrastive = figure_4[0]
    g = np.linspace(-3.0, 5.0, 161)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    top = grid[np.argmax(contrastive.score_samples(grid))]
    assert np.linalg.norm(top - [1.0, 1.0]) < 1.5
    # the positive difference peaks beyond (1, 1), away from q's centre
    truth = multivariate_normal.pdf(grid, [1, 1]) - multivariate_normal.pdf(grid, [0, 0])
    assert np.linalg.norm(top - grid[np.argmax(truth)]) < 0.75


def test_inlier_contamination_of_x_aux_barely_matters(figure_4):
    """Section 5.3.1, eq. (10)-(14): q_new = p/2 + q/2 has the same (p - q_new)+."""
    contrastive, contaminated, plain, X_test, y_test = figure_4
    clean = roc_auc_score(y_test, contrastive.score_samples(X_test))
    mixed = roc_auc_score(y_test, contaminated.score_samples(X_test))
    assert abs(clean - mixed) < 0.02
    # where the outliers come from q, the contrastive term helps
    assert clean > roc_auc_score(y_test, plain.score_samples(X_test)) + 0.05


def test_clamped_auxiliary_samples_stop_pushing():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    det = ContrastiveFlowDetector(clamp=-1e6, **SMALL).fit(X)
    batch = torch.as_tensor((X - det.mean_) / det.scale_, dtype=torch.float32)
    module = det.module_.float()
    generator = torch.Generator().manual_seed(0)
    det._aux_data = None  # what the training loss sees: the generator's samples ...
    det._clamp = det.clamp_  # ... and the clamp of the log-density
    with torch.no_grad():
        pushing = det._loss(module, batch, generator)
        # every auxiliary sample lies below: the term is a constant
        det._clamp = 1e6
        clamped = det._loss(module, batch, generator)
        nll = det._nll(module, batch)
    assert float(clamped) == pytest.approx(float(nll) + 1e6 / 3, rel=1e-6)
    assert float(pushing) < float(nll)


def test_float_clamp_is_used_as_given():
    X = np.random.RandomState(0).normal(size=(100, 2))
    assert ContrastiveFlowDetector(clamp=-3.5, **SMALL).fit(X).clamp_ == -3.5


@pytest.mark.parametrize("auxiliary", [None, FeaturePermutation(), UniformBox(margin=0.5)])
def test_generators_make_the_auxiliary_samples(auxiliary):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    det = ContrastiveFlowDetector(auxiliary=auxiliary, **SMALL).fit(X)
    expected = FeaturePermutation if auxiliary is None else type(auxiliary)
    assert isinstance(det.auxiliary_, expected)
    assert det.auxiliary_ is not auxiliary  # a fitted clone
    with_aux = ContrastiveFlowDetector(auxiliary=auxiliary, **SMALL).fit(X, X_aux=X[:50] * 2)
    assert with_aux.auxiliary_ is None


def test_warns_when_x_aux_has_as_many_rows_as_x():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(100, 2))
    with pytest.warns(UserWarning, match="as many rows as X"):
        ContrastiveFlowDetector(**SMALL).fit(X, X_aux=rng.normal(size=(100, 2)))


def test_warns_when_x_aux_is_on_another_scale():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(100, 2))
    with pytest.warns(UserWarning, match="different scale"):
        ContrastiveFlowDetector(**SMALL).fit(X, X_aux=1000.0 * rng.normal(size=(80, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ContrastiveFlowDetector(**SMALL).fit(X, X_aux=2.0 * rng.normal(size=(80, 2)))


def test_x_aux_with_wrong_features_is_rejected():
    X = np.random.RandomState(0).normal(size=(100, 2))
    with pytest.raises(ValueError, match="features"):
        ContrastiveFlowDetector(**SMALL).fit(X, X_aux=np.zeros((10, 3)))


def test_pipeline_with_scaler_and_default_generator(labelled_blobs):
    X, y = labelled_blobs
    pipe = make_pipeline(StandardScaler(), ContrastiveFlowDetector(**SMALL)).fit(X)
    assert isinstance(pipe[-1].auxiliary_, FeaturePermutation)
    assert roc_auc_score(y, pipe.score_samples(X)) > 0.9
    assert set(pipe.predict(X)) == {-1, 1}


def test_grid_search_over_clamp_and_learning_rate_with_routed_x_aux(labelled_blobs, routing):
    X, y = labelled_blobs
    X_aux = np.random.RandomState(1).uniform(0.0, 100.0, size=(151, 3))
    det = ContrastiveFlowDetector(**SMALL).set_fit_request(X_aux=True)
    search = GridSearchCV(
        det,
        {"clamp": ["auto", -2.0], "learning_rate": [1e-3, 3e-3]},
        scoring="roc_auc",
        cv=StratifiedKFold(3),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # 151 rows: never sliced
        search.fit(X, y, X_aux=X_aux)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_score_ > 0.8
    assert search.best_estimator_.auxiliary_ is None  # trained against X_aux


def test_routed_x_aux_through_a_pipeline_is_not_transformed(labelled_blobs, routing):
    X, _ = labelled_blobs
    X_aux = np.random.RandomState(1).uniform(0.0, 100.0, size=(151, 3))
    det = ContrastiveFlowDetector(**SMALL).set_fit_request(X_aux=True)
    pipe = make_pipeline(StandardScaler(), det)
    with pytest.warns(UserWarning, match="different scale"):
        pipe.fit(X, X_aux=X_aux)


def test_grid_search_with_the_generator_and_no_routing(labelled_blobs):
    X, y = labelled_blobs
    search = GridSearchCV(
        make_pipeline(StandardScaler(), ContrastiveFlowDetector(**SMALL)),
        {"contrastiveflowdetector__auxiliary": [FeaturePermutation(), UniformBox()]},
        scoring="roc_auc",
        cv=StratifiedKFold(3),
    ).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_score_ > 0.8


class _RecordingContrastiveFlow(ContrastiveFlowDetector):
    """Records the history of every training loop of a fit."""

    def fit(self, X, y=None, **fit_params):
        self.histories_ = []
        return super().fit(X, y, **fit_params)

    def _train(self, module, loss, X_train, X_val, generator, **options):
        history = super()._train(module, loss, X_train, X_val, generator, **options)
        self.histories_.append(history)
        return history


def test_auto_clamp_warms_up_for_a_fraction_of_the_epochs():
    X = np.random.RandomState(0).normal(size=(200, 3))
    det = _RecordingContrastiveFlow(**{**SMALL, "max_epochs": 8}, warm_up_fraction=0.25,
                                    validation_fraction=None).fit(X)
    warm_up, main = det.histories_
    # the maximum-likelihood warm-up, then max_epochs of contrastive training
    assert warm_up.n_epochs == 2 and main.n_epochs == det.n_epochs_ == 8
    assert det.loss_curve_ == main.loss_curve
    given = _RecordingContrastiveFlow(**{**SMALL, "max_epochs": 8}, clamp=-4.0,
                                      validation_fraction=None).fit(X)
    assert len(given.histories_) == 1  # a given clamp needs no warm-up


@pytest.mark.parametrize("clamp", [np.nan, np.inf, -np.inf])
def test_non_finite_clamp_is_rejected_before_training(clamp):
    X = np.random.RandomState(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="'clamp' parameter .* range \\(-inf, inf\\)"):
        ContrastiveFlowDetector(clamp=clamp, **SMALL).fit(X)


def test_the_automatic_clamp_is_the_warm_up_quantile_minus_ln_10():
    # the documented deviation from section 5.2.1 (which adds ln 10): eps is the
    # 10% quantile of the warmed-up flow's training log-densities minus ln 10
    from sklearn_flowod.detectors.flow import flow_log_density

    X = np.random.default_rng(0).standard_normal((200, 3))
    det = ContrastiveFlowDetector(**SMALL).fit(X)  # the network's shape and the scaler
    module = det._build_module(det._module_config_, seed=0)
    det._clamp = None  # the warm-up trains by maximum likelihood
    X_train = torch.as_tensor((X - det.mean_) / det.scale_, dtype=torch.float32)
    eps = det._auto_clamp(module, X_train, None, torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_p = flow_log_density(module, X_train).numpy()
    assert eps == pytest.approx(np.quantile(log_p, 0.1) - math.log(10.0), rel=1e-5)


def test_clamp_offset_moves_the_automatic_clamp_and_nothing_before_it():
    # the warm-up does not depend on the offset: the paper's "+ ln 10" lies 2 ln 10
    # above the default's "- ln 10" for the same random_state
    X = np.random.default_rng(1).standard_normal((150, 3))
    default = ContrastiveFlowDetector(**SMALL).fit(X)
    paper = ContrastiveFlowDetector(clamp_offset=math.log(10.0), **SMALL).fit(X)
    assert paper.clamp_ - default.clamp_ == pytest.approx(2 * math.log(10.0), rel=1e-9)
    assert not np.allclose(paper.score_samples(X), default.score_samples(X))
