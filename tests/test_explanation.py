"""Per-feature attributions: the 1-D search, planted causes, batches, pipelines, pickling."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_flowod import (
    ContrastiveFlowDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.datasets import make_planted_anomalies
from sklearn_flowod.explanation import feature_quantiles, score_drops

from .conftest import small_detectors

DETECTORS = small_detectors()
ids = [type(d).__name__ for d in DETECTORS]


def quadratic_score(precision):
    """The negative log-density of a centred Gaussian, up to its constant."""
    def score(module, batch):
        return 0.5 * ((batch @ precision) * batch).sum(dim=1)
    return score


@given(st.integers(2, 6), st.integers(1, 5), st.integers(3, 9), st.integers(0, 2**16))
def test_attribution_is_the_exact_conditional_drop_for_a_gaussian(n_features, n_rows,
                                                                   n_values, seed):
    # for a Gaussian, moving x_j to its conditional mean m_j lowers -log p by
    # P_jj (x_j - m_j)^2 / 2; the score is quadratic in x_j, so the parabolic
    # step finds that drop exactly, from any grid that brackets m_j
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(n_features, n_features))
    precision = torch.as_tensor(root @ root.T + n_features * np.eye(n_features))
    x = torch.as_tensor(rng.normal(size=(n_rows, n_features)))
    grid = torch.sort(torch.as_tensor(rng.uniform(-30, 30, size=(n_values, n_features))),
                      dim=0).values
    grid[0], grid[-1] = -30.0, 30.0
    found = score_drops(quadratic_score(precision), None, x, grid)
    diag = torch.diagonal(precision)
    mean = x - (x @ precision) / diag
    exact = 0.5 * diag * (x - mean) ** 2
    np.testing.assert_allclose(found, exact, rtol=1e-9, atol=1e-9)


def test_padding_columns_are_never_moved():
    x = torch.tensor([[3.0, 7.0]], dtype=torch.float64)
    grid = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    drops = score_drops(lambda m, b: b.pow(2).sum(dim=1), None, x, grid)
    assert drops.shape == (1, 1)
    assert drops.item() == pytest.approx(9.0)


def test_quantiles_of_a_binary_column_are_its_two_values():
    X = np.c_[np.r_[np.zeros(60), np.ones(40)], np.linspace(0, 1, 100)]
    assert set(np.unique(feature_quantiles(X)[:, 0])) == {0.0, 1.0}


@pytest.mark.parametrize("kind", ["correlation", "extreme"])
@pytest.mark.parametrize("cls", [FlowDetector, ContrastiveFlowDetector, LikelihoodRatioDetector,
                                 InvertibleOneClassDetector])
def test_planted_causes_are_ranked_first(cls, kind):
    X, anomalies, causes = make_planted_anomalies(2000, 100, kind=kind, random_state=1)
    detector = cls(random_state=0, device="cpu").fit(X)
    top = detector.explain(anomalies).argmax(axis=1)
    assert np.mean(top == causes) >= 0.9


@pytest.mark.parametrize("detector", DETECTORS, ids=ids)
def test_explain_is_non_negative_and_does_not_depend_on_batches(detector, blobs):
    X, X_out = blobs
    det = clone(detector).fit(X)
    rows = np.vstack([X[:20], X_out[:20]])
    attributions = det.explain(rows)
    assert attributions.shape == rows.shape and np.all(attributions >= 0)
    assert np.all(np.isfinite(attributions))
    with sklearn.config_context(working_memory=0.01):
        np.testing.assert_allclose(det.explain(rows), attributions, rtol=1e-9, atol=1e-9)
    # the far blobs owe their scores to their features: they get larger attributions
    assert attributions[20:].max(axis=1).mean() > attributions[:20].max(axis=1).mean()


@pytest.mark.parametrize("detector", DETECTORS[:1] + DETECTORS[3:4], ids=ids[:1] + ids[3:4])
def test_dataframes_give_named_attributions_and_pickles_keep_them(detector, blobs):
    X, X_out = blobs
    columns = ["amount", "hour", "age", "score"]
    frame = pd.DataFrame(X, columns=columns)
    det = clone(detector).fit(frame)
    queries = pd.DataFrame(X_out[:5], columns=columns, index=list("abcde"))
    attributions = det.explain(queries)
    assert isinstance(attributions, pd.DataFrame)
    assert list(attributions.columns) == columns and list(attributions.index) == list("abcde")
    loaded = pickle.loads(pickle.dumps(det))
    pd.testing.assert_frame_equal(loaded.explain(queries), attributions)


def test_in_a_pipeline_after_a_scaler_attributions_are_the_input_columns():
    # a per-column scaler commutes with the search over each column's
    # quantiles: the pipeline's attributions are those of its input columns
    X, anomalies, causes = make_planted_anomalies(1000, 30, n_features=4, random_state=2)
    columns = ["a", "b", "c", "d"]
    frame = pd.DataFrame(X * [1.0, 10.0, 100.0, 0.1] + 5.0, columns=columns)
    queries = pd.DataFrame(anomalies * [1.0, 10.0, 100.0, 0.1] + 5.0, columns=columns)
    params = {"n_blocks": 2, "hidden_size": 16, "max_epochs": 5, "validation_fraction": None,
              "device": "cpu", "random_state": 0}
    pipe = make_pipeline(StandardScaler(), FlowDetector(**params)).set_output(transform="pandas")
    pipe.fit(frame)
    through_pipeline = pipe[-1].explain(pipe[:-1].transform(queries))
    assert list(through_pipeline.columns) == columns
    direct = FlowDetector(**params).fit(frame).explain(queries)
    np.testing.assert_allclose(through_pipeline.to_numpy(), direct.to_numpy(), rtol=1e-4,
                               atol=1e-6)


def test_sparse_rows_are_explained_like_dense_ones(blobs):
    import scipy.sparse as sp

    X, X_out = blobs
    det = clone(DETECTORS[3]).fit(X)
    np.testing.assert_allclose(det.explain(sp.csr_matrix(X_out[:5])), det.explain(X_out[:5]))


def test_one_feature_data_get_one_attribution(blobs):
    X, X_out = blobs
    det = clone(DETECTORS[3]).fit(X[:, :1])
    attributions = det.explain(np.r_[X[:3, :1], X_out[:3, :1]])
    assert attributions.shape == (6, 1)
    assert np.all(attributions[3:] > attributions[:3].max())


def test_a_model_pickled_before_explanations_says_to_refit(blobs):
    X, _ = blobs
    det = clone(DETECTORS[3]).fit(X)
    del det.feature_quantiles_  # as a model fitted by an earlier version loads
    with pytest.raises(NotFittedError, match="fit it again"):
        det.explain(X[:3])
