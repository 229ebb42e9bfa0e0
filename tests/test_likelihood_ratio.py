"""LikelihoodRatioDetector: the hierarchies-of-distributions log-likelihood ratio."""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from sklearn_flowod import (
    ContrastiveFlowDetector,
    FeaturePermutation,
    FlowDetector,
    LikelihoodRatioDetector,
    UniformBox,
)
from sklearn_flowod._engine.batches import scoring_rows

#: Flows small enough for a few seconds of training, large enough for the toys.
TOY = {"n_neighbors": None, "n_blocks": 4, "hidden_size": 32, "max_epochs": 30,
       "learning_rate": 1e-3, "validation_fraction": None, "device": "cpu", "random_state": 0}
SMALL = {"n_neighbors": None, "n_blocks": 2, "hidden_size": 16, "max_epochs": 5, "device": "cpu",
         "random_state": 0}


@pytest.fixture(scope="module")
def figure_4():
    """CF paper, Fig. 4: inliers N([1, 1], I), auxiliary data N(0, I)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(2000, 2)) + 1.0
    X_aux = rng.normal(size=(2001, 2))
    return X, X_aux, LikelihoodRatioDetector(**TOY).fit(X, X_aux=X_aux)


def _grid(half_width=5.0, n=101):
    axis = np.linspace(-half_width, half_width, n)
    return np.array(np.meshgrid(axis, axis)).reshape(2, -1).T


def test_ratio_matches_the_analytic_log_ratio_near_the_data(figure_4):
    X, _, ratio = figure_4
    # log N(x; [1, 1], I) - log N(x; 0, I) = x1 + x2 - 1
    near = X[np.linalg.norm(X - 1.0, axis=1) < 1.5]
    error = ratio.score_samples(near) - (near.sum(axis=1) - 1.0)
    assert np.median(np.abs(error)) < 0.3


def test_ratio_peaks_far_from_both_gaussians_where_the_contrastive_flow_does_not(figure_4):
    X, X_aux, ratio = figure_4
    grid = _grid()
    peak = grid[np.argmax(ratio.score_samples(grid))]
    # the failure of Fig. 4: the most "normal" point lies far from both data sets,
    # at the edge of the grid, and scores higher than the inliers' centre
    assert np.linalg.norm(peak - 1.0) > 3.0 and np.linalg.norm(peak) > 4.0
    assert ratio.score_samples(peak[None])[0] > ratio.score_samples([[1.0, 1.0]])[0] + 3.0
    contrastive = ContrastiveFlowDetector(**{**TOY, "max_epochs": 60}).fit(X, X_aux=X_aux)
    cf_peak = grid[np.argmax(contrastive.score_samples(grid))]
    assert np.linalg.norm(cf_peak - 1.0) < 1.5


def test_broad_auxiliary_distribution_detects_outliers():
    rng = np.random.RandomState(0)
    X = rng.normal(scale=0.5, size=(2000, 2))
    X_test = rng.normal(scale=0.5, size=(500, 2))
    X_out = rng.uniform(-4.0, 4.0, size=(2000, 2))
    X_out = X_out[np.linalg.norm(X_out, axis=1) > 2.0][:500]
    y = np.r_[np.zeros(len(X_test)), np.ones(len(X_out))]
    wide = LikelihoodRatioDetector(**TOY).fit(X, X_aux=rng.normal(scale=3.0, size=(2001, 2)))
    assert roc_auc_score(y, wide.anomaly_score(np.r_[X_test, X_out])) >= 0.95
    box = LikelihoodRatioDetector(**TOY, auxiliary=UniformBox(margin=1.0)).fit(X)
    assert roc_auc_score(y, box.anomaly_score(np.r_[X_test, X_out])) >= 0.95
    # contamination="auto": the boundary is log-ratio 0
    assert box.offset_ == 0.0
    scores = box.score_samples(X_out)
    np.testing.assert_array_equal(box.predict(X_out), np.where(scores >= 0, 1, -1))


def test_score_is_the_difference_of_the_two_log_densities(blobs):
    X, X_out = blobs
    det = LikelihoodRatioDetector(**SMALL).fit(X)
    general = det.aux_model_
    assert isinstance(general, FlowDetector)
    assert general.n_blocks == det.n_blocks and general.hidden_size == det.hidden_size
    expected = det.log_density(X_out) - general.log_density(X_out)
    np.testing.assert_allclose(det.score_samples(X_out), expected, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(det.anomaly_score(X_out), -expected, rtol=1e-10, atol=1e-8)


def test_default_generator_is_seeded_from_the_detector(blobs):
    X, _ = blobs
    det = LikelihoodRatioDetector(**SMALL).fit(X)
    assert isinstance(det.auxiliary_, UniformBox)
    assert isinstance(det.auxiliary_.random_state, int)
    again = LikelihoodRatioDetector(**SMALL).fit(X)
    np.testing.assert_array_equal(det.score_samples(X), again.score_samples(X))


@pytest.fixture
def frozen_general(blobs):
    X, _ = blobs
    X_aux = np.random.RandomState(1).uniform(-4.0, 4.0, size=(400, 4))
    return FrozenEstimator(FlowDetector(**SMALL).fit(X_aux))


def test_frozen_general_model_is_reused_not_refitted(blobs, frozen_general, monkeypatch):
    X, _ = blobs
    general = frozen_general.estimator
    before = {k: v.clone() for k, v in general.module_.state_dict().items()}
    det = LikelihoodRatioDetector(aux_model=frozen_general, **SMALL).fit(X)
    assert det.aux_model_ is frozen_general
    assert det.auxiliary_ is None  # no auxiliary data needed at all
    for key, value in general.module_.state_dict().items():
        assert value.equal(before[key])
    # clone keeps the frozen model fitted, so a search never refits it
    check_is_fitted(clone(det).aux_model)

    def refit(*args, **kwargs):
        raise AssertionError("the frozen general model was refitted")

    monkeypatch.setattr(FlowDetector, "fit", refit)
    y = np.ones(len(X), dtype=int)
    y[::10] = -1
    search = GridSearchCV(
        LikelihoodRatioDetector(aux_model=frozen_general, **SMALL),
        {"learning_rate": [1e-3, 3e-3], "n_blocks": [1, 2]},
        scoring="roc_auc",
        cv=StratifiedKFold(3),
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.aux_model_ is frozen_general


def test_unfrozen_aux_model_is_cloned_and_fitted(blobs):
    X, _ = blobs
    template = FlowDetector(n_blocks=1, hidden_size=8, max_epochs=3, random_state=0)
    det = LikelihoodRatioDetector(aux_model=template, **SMALL).fit(X)
    assert det.aux_model_ is not template and det.aux_model_.n_blocks == 1
    assert not hasattr(template, "module_")


@pytest.fixture
def recorded_bars(monkeypatch):
    """The descriptions of the tqdm bars opened, in order."""
    tqdm_auto = pytest.importorskip("tqdm.auto")
    names = []

    class RecordedBar(tqdm_auto.tqdm):
        def __init__(self, *args, **kwargs):
            names.append(kwargs.get("desc"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm_auto, "tqdm", RecordedBar)
    return names


def test_verbose_names_the_bar_of_each_flow(blobs, frozen_general, recorded_bars):
    X, _ = blobs
    LikelihoodRatioDetector(**{**SMALL, "max_epochs": 2}, verbose=1).fit(X)
    assert recorded_bars == ["general flow", "in-distribution flow"]
    recorded_bars.clear()
    LikelihoodRatioDetector(aux_model=frozen_general, **{**SMALL, "max_epochs": 2},
                            verbose=1).fit(X)
    assert recorded_bars == ["in-distribution flow"]  # the frozen flow is not trained
    recorded_bars.clear()
    FlowDetector(**{**SMALL, "max_epochs": 2}, verbose=1).fit(X)  # the name is per fit
    assert recorded_bars == ["FlowDetector"]


def test_aux_model_errors(blobs, frozen_general):
    X, _ = blobs
    with pytest.raises(ValueError, match="'aux_model' parameter"):
        LikelihoodRatioDetector(aux_model=StandardScaler(), **SMALL).fit(X)
    forest = IsolationForest(random_state=0)
    with pytest.raises(TypeError, match="must be a flow detector"):
        LikelihoodRatioDetector(aux_model=forest, **SMALL).fit(X)
    with pytest.raises(TypeError, match="must be a flow detector"):
        LikelihoodRatioDetector(aux_model=FrozenEstimator(forest.fit(X)), **SMALL).fit(X)
    with pytest.raises(ValueError, match="fitted on 4 features, but X has 3"):
        LikelihoodRatioDetector(aux_model=frozen_general, **SMALL).fit(X[:, :3])


def test_outlier_loss_lowers_the_ratio_on_auxiliary_samples():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(1000, 2)) + 1.0
    X_aux = rng.normal(size=(1001, 2))
    plain = LikelihoodRatioDetector(**TOY).fit(X, X_aux=X_aux)
    pushed = LikelihoodRatioDetector(**TOY, outlier_weight=5.0).fit(X, X_aux=X_aux)
    assert not hasattr(pushed, "_outlier_data")  # the sample is not kept in the model
    aux_only = X_aux[np.linalg.norm(X_aux - 1.0, axis=1) > 2.0]
    assert pushed.score_samples(aux_only).mean() < plain.score_samples(aux_only).mean() - 0.5
    # the inliers keep their likelihood under the in-distribution flow
    assert pushed.log_density(X).mean() > plain.log_density(X).mean() - 0.5


def test_one_feature_with_outlier_loss():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 1))
    det = LikelihoodRatioDetector(outlier_weight=1.0, **SMALL).fit(X)
    scores = det.score_samples(np.linspace(-6.0, 6.0, 25)[:, None])
    assert np.isfinite(scores).all()


def test_grid_search_with_routed_x_aux(labelled_blobs, routing):
    X, y = labelled_blobs
    X_aux = np.random.RandomState(1).uniform(0.0, 100.0, size=(151, 3))
    det = LikelihoodRatioDetector(**SMALL).set_fit_request(X_aux=True)
    search = GridSearchCV(det, {"learning_rate": [1e-3, 3e-3]}, scoring="roc_auc",
                          cv=StratifiedKFold(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        search.fit(X, y, X_aux=X_aux)
    assert search.best_score_ > 0.8
    assert search.best_estimator_.auxiliary_ is None


def test_x_aux_traps_are_reported(labelled_blobs, routing):
    X, _ = labelled_blobs
    det = LikelihoodRatioDetector(**SMALL).set_fit_request(X_aux=True)
    with pytest.warns(UserWarning, match="different scale"):
        make_pipeline(StandardScaler(), det).fit(X, X_aux=X[:151])
    with pytest.warns(UserWarning, match="as many rows as X"):
        LikelihoodRatioDetector(**SMALL).fit(X, X_aux=X[::-1])


def test_pipeline_with_the_generator(labelled_blobs):
    X, y = labelled_blobs
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LikelihoodRatioDetector(**SMALL)),
        {"likelihoodratiodetector__auxiliary": [FeaturePermutation(), UniformBox()]},
        scoring="roc_auc",
        cv=StratifiedKFold(3),
    ).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_scoring_folds_each_flow_once_not_once_per_batch(monkeypatch):
    import sklearn_flowod._engine.folded as folded

    X = np.random.RandomState(0).normal(size=(200, 3))
    det = LikelihoodRatioDetector(max_epochs=2, random_state=0).fit(X)
    expected = det.score_samples(X)
    folds = []
    original = folded.CouplingEvaluator

    def counting(module):
        folds.append(module)
        return original(module)

    monkeypatch.setattr(folded, "CouplingEvaluator", counting)
    # a small working memory: many scoring batches
    with sklearn.config_context(working_memory=0.02):
        rows = scoring_rows(det.module_, 3, len(X), det.device_)
        scores = det.score_samples(X)
        again = det.score_samples(X)
    assert len(X) // rows >= 4
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(again, scores)
    # both flows were folded by the first scoring call; their folded copies are reused
    assert folds == []
    # a changed weight of the general flow is seen: it is folded again, once
    with torch.no_grad():
        det.aux_model_.module_.module_list[0].global_offset.add_(0.1)
    with sklearn.config_context(working_memory=0.02):
        changed = det.score_samples(X)
    assert len(folds) == 1 and folds[0] is det.aux_model_.module_
    assert not np.allclose(changed, scores)


@pytest.mark.parametrize("seed", [0, 1])
def test_default_general_distribution_ranks_far_outliers_as_outliers(seed):
    # 4-D standard normal rows and a cluster far out in every coordinate, in
    # the training rows too: the default box covers the cluster, the product
    # of the marginals does not, and its ratio calls the cluster normal
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((400, 4)), 5.0 + 0.5 * rng.standard_normal((40, 4))])
    y = np.r_[np.zeros(400), np.ones(40)]
    budget = {"n_neighbors": None, "n_blocks": 4, "hidden_size": 32, "max_epochs": 20,
              "random_state": seed}
    default = LikelihoodRatioDetector(**budget).fit(X)
    narrow = LikelihoodRatioDetector(**budget, auxiliary=FeaturePermutation()).fit(X)
    assert roc_auc_score(y, -default.score_samples(X)) > 0.7
    assert roc_auc_score(y, -narrow.score_samples(X)) < 0.2


def test_default_general_distribution_is_the_box_widened_by_its_range():
    # skewed columns: the training rows stay in the middle third of every side
    X = np.random.default_rng(0).lognormal(size=(200, 3))
    detector = LikelihoodRatioDetector(**SMALL).fit(X)
    width = X.max(axis=0) - X.min(axis=0)
    np.testing.assert_allclose(detector.auxiliary_.low_, X.min(axis=0) - width)
    np.testing.assert_allclose(detector.auxiliary_.high_, X.max(axis=0) + width)


@pytest.mark.parametrize("frozen", [False, True])
def test_likelihood_ratio_is_refused_as_general_model(frozen):
    X = np.random.RandomState(0).normal(size=(60, 2))
    aux_model = LikelihoodRatioDetector(**SMALL)
    if frozen:
        aux_model = FrozenEstimator(aux_model)
    with pytest.raises(TypeError, match="not be another LikelihoodRatioDetector"):
        LikelihoodRatioDetector(aux_model=aux_model, **SMALL).fit(X)


def test_frozen_general_model_needs_the_same_feature_names():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    general = FrozenEstimator(FlowDetector(**SMALL).fit(frame))
    ratio = LikelihoodRatioDetector(aux_model=general, **SMALL)
    for columns in (["a", "c", "b"], ["a", "b", "x"]):
        renamed = frame.copy()
        renamed.columns = columns
        with pytest.raises(ValueError, match="feature names should match"):
            clone(ratio).fit(renamed)
    assert clone(ratio).fit(frame).score_samples(frame).shape == (60,)
