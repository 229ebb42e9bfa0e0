"""The scikit-learn contract every detector of the package keeps."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_flowod._engine.batches import scoring_rows

from .conftest import same_params, small_detectors

DETECTORS = small_detectors()
ids = [type(d).__name__ for d in DETECTORS]
pytestmark = pytest.mark.parametrize("detector", DETECTORS, ids=ids)


def _labelled(blobs):
    X, X_out = blobs
    X_all = np.vstack([X, X_out])
    y = np.r_[np.ones(len(X)), -np.ones(len(X_out))].astype(int)
    return X_all, y


def test_pipeline_separates_outliers(detector, blobs):
    X, X_out = blobs
    pipe = make_pipeline(StandardScaler(), clone(detector).set_params(max_epochs=20)).fit(X)
    scores = pipe.score_samples(np.vstack([X, X_out]))
    y = np.r_[np.ones(len(X)), np.zeros(len(X_out))]
    assert roc_auc_score(y, scores) > 0.95
    assert set(np.unique(pipe.predict(np.vstack([X, X_out])))) <= {-1, 1}


def test_grid_search_with_stratified_folds(detector, blobs):
    X_all, y = _labelled(blobs)
    search = GridSearchCV(
        clone(detector),
        {"learning_rate": [1e-3, 3e-3]},
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
        scoring="roc_auc",
    ).fit(X_all, y)
    assert search.best_score_ > 0.9
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    cv_scores = cross_val_score(
        clone(detector), X_all, y, cv=StratifiedKFold(3), scoring="roc_auc"
    )
    assert cv_scores.min() > 0.9


def test_clone_is_unfitted_with_same_params(detector, blobs):
    fitted = clone(detector).fit(blobs[0])
    copy = clone(fitted)
    assert same_params(copy, fitted)
    assert not hasattr(copy, "module_")
    assert not hasattr(copy, "offset_")


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_persistence_round_trip_gives_identical_scores(detector, blobs, dump):
    X, X_out = blobs
    det = clone(detector).fit(X)
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(det))
    else:
        buffer = io.BytesIO()
        joblib.dump(det, buffer)
        buffer.seek(0)
        loaded = joblib.load(buffer)
    X_test = np.vstack([X, X_out])
    np.testing.assert_array_equal(loaded.score_samples(X_test), det.score_samples(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), det.predict(X_test))
    assert loaded.offset_ == det.offset_


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_model_fitted_on_cuda_loads_on_cpu_with_warning(detector, blobs):
    X, _ = blobs
    det = clone(detector).fit(X)
    expected = det.score_samples(X)
    det.device_ = torch.device("cuda")  # as if it had been fitted on a GPU
    payload = pickle.dumps(det)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        loaded = pickle.loads(payload)
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.score_samples(X), expected)


def test_same_seed_same_model_and_scores(detector, blobs):
    X, X_out = blobs
    a = clone(detector).set_params(random_state=3).fit(X)
    b = clone(detector).set_params(random_state=3).fit(X)
    c = clone(detector).set_params(random_state=4).fit(X)
    for key, value in a.module_.state_dict().items():
        assert torch.equal(value, b.module_.state_dict()[key]), key
    X_test = np.vstack([X, X_out])
    np.testing.assert_array_equal(a.score_samples(X_test), b.score_samples(X_test))
    assert not np.array_equal(a.score_samples(X_test), c.score_samples(X_test))


@pytest.mark.parametrize("random_state", [None, 0])
def test_fit_leaves_global_rng_untouched(detector, blobs, random_state):
    np.random.seed(123)
    torch.manual_seed(123)
    numpy_before = np.random.get_state()[1].copy()
    torch_before = torch.get_rng_state().clone()
    clone(detector).set_params(random_state=random_state).fit(blobs[0])
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)
    assert torch.equal(torch.get_rng_state(), torch_before)


def test_sign_conventions(detector, blobs):
    X, X_out = blobs
    det = clone(detector).set_params(max_epochs=20).fit(X)
    X_test = np.vstack([X, X_out])
    scores = det.score_samples(X_test)
    np.testing.assert_array_equal(det.anomaly_score(X_test), -scores)
    np.testing.assert_allclose(det.decision_function(X_test), scores - det.offset_)
    assert scores.dtype == np.float64
    # outliers are less normal than inliers on average
    assert scores[len(X) :].mean() < scores[: len(X)].mean()


def test_contamination_sets_training_outlier_fraction(detector, blobs):
    det = clone(detector).set_params(contamination=0.1).fit(blobs[0])
    flagged = np.mean(det.predict(blobs[0]) == -1)
    assert flagged == pytest.approx(0.1, abs=0.01)


def test_scores_do_not_depend_on_scoring_batches(detector, blobs):
    X, X_out = blobs
    det = clone(detector).fit(X)
    X_test = np.vstack([X, X_out])
    whole = det.score_samples(X_test)
    # a small working memory: batches of a few rows, the last one partial
    with sklearn.config_context(working_memory=0.004):
        rows = scoring_rows(det.module_, X_test.shape[1], len(X_test), det.device_)
        batched = det.score_samples(X_test)
    assert 1 < rows < 20 and len(X_test) % rows
    # equal up to float64 rounding: matrix products of different row counts may
    # take other kernels
    np.testing.assert_allclose(batched, whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_and_scoring_leave_the_input_unchanged(detector, blobs, dtype):
    # the rows are standardised in place, in a copy of their own
    X = blobs[0].astype(dtype)
    original = X.copy()
    det = clone(detector).fit(X)
    det.score_samples(X)
    det.decision_function(X[:5])
    np.testing.assert_array_equal(X, original)


def test_pandas_input_records_feature_names(detector, blobs):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(blobs[0], columns=[f"f{i}" for i in range(4)])
    det = clone(detector).fit(frame)
    np.testing.assert_array_equal(det.feature_names_in_, frame.columns.to_numpy())
    with pytest.raises(ValueError, match="Feature names"):
        det.score_samples(frame.rename(columns={"f0": "other"}))


def test_dataframe_fit_with_contamination_does_not_warn(detector, blobs):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(blobs[0], columns=[f"f{i}" for i in range(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = clone(detector).set_params(contamination=0.1).fit(frame)
    assert np.mean(det.predict(frame) == -1) == pytest.approx(0.1, abs=0.01)


def test_wildly_scaled_columns_train_without_nan(detector):
    rng = np.random.RandomState(0)
    amounts = rng.lognormal(mean=8.0, sigma=2.0, size=(400, 2))  # thousands to millions
    flags = rng.binomial(1, 0.1, size=(400, 2))
    X = np.hstack([amounts, flags, rng.normal(size=(400, 1))])
    det = clone(detector).set_params(max_epochs=10).fit(X)
    assert np.all(np.isfinite(det.score_samples(X)))
    assert np.all(np.isfinite(det.loss_curve_))


def test_validation_split_and_early_stopping(detector, blobs):
    det = clone(detector).set_params(
        validation_fraction=0.2, n_iter_no_change=1, tol=1e9, max_epochs=50
    )
    det.fit(blobs[0])
    # tol is huge, so no epoch after the first counts as an improvement
    assert det.n_epochs_ == 2
    assert det.best_epoch_ == 1
    assert len(det.validation_loss_curve_) == len(det.loss_curve_) == det.n_epochs_


def _best_check(curve, tol):
    """The check early stopping keeps: the last to improve on the best by ``tol``."""
    best = 0
    for index, value in enumerate(curve):
        if value < curve[best] - tol:
            best = index
    return best


def test_fitted_attributes(detector, blobs):
    det = clone(detector).fit(blobs[0])
    assert det.n_features_in_ == 4
    # a few epochs of one step each: the budget is spent before early stopping
    assert det.n_epochs_ == det.max_epochs == len(det.loss_curve_)
    assert det.device_ == torch.device("cpu")
    if det.validation_fraction is None:
        assert not hasattr(det, "validation_loss_curve_")
        assert det.best_epoch_ == det.n_epochs_
    else:
        assert len(det.validation_loss_curve_) == det.n_epochs_
        if det.n_iter_no_change is None:  # held-out rows without early stopping
            assert det.best_epoch_ == det.n_epochs_
        else:  # the weights of the best check are kept
            assert det.best_epoch_ == _best_check(det.validation_loss_curve_, det.tol) + 1


def test_without_early_stopping_the_last_epoch_is_kept(detector, blobs):
    det = clone(detector).set_params(n_iter_no_change=None, max_epochs=4).fit(blobs[0])
    assert det.n_epochs_ == det.best_epoch_ == len(det.loss_curve_) == 4


def test_verbose_reports_progress(detector, blobs, capsys, caplog):
    clone(detector).set_params(verbose=1, max_epochs=2).fit(blobs[0])
    captured = capsys.readouterr()
    assert "epoch" in captured.err + caplog.text or "2/2" in captured.err

