"""Contrastive-sample generators: transformers and batch samplers."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_flowod import (
    ContrastiveFlowDetector,
    FeaturePermutation,
    LikelihoodRatioDetector,
    UniformBox,
)


@parametrize_with_checks([FeaturePermutation(random_state=0), UniformBox(random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


finite = st.floats(-1e6, 1e6, allow_nan=False)
matrices = st.tuples(st.integers(1, 30), st.integers(1, 5)).flatmap(
    lambda shape: arrays(np.float64, shape, elements=finite)
)


@given(X=matrices, seed=st.integers(0, 2**31 - 1))
@settings(max_examples=50, deadline=None)
def test_permutation_keeps_each_columns_values(X, seed):
    Y = FeaturePermutation(random_state=seed).fit_transform(X)
    np.testing.assert_array_equal(np.sort(Y, axis=0), np.sort(X, axis=0))
    batch = torch.as_tensor(X)
    gen = torch.Generator().manual_seed(seed)
    Z = FeaturePermutation().fit(X).sample(batch, gen).numpy()
    np.testing.assert_array_equal(np.sort(Z, axis=0), np.sort(X, axis=0))


def test_permutation_breaks_dependence_between_columns():
    rng = np.random.RandomState(0)
    x = rng.normal(size=5000)
    X = np.c_[x, x + 0.1 * rng.normal(size=5000)]
    Y = FeaturePermutation(random_state=0).fit_transform(X)
    assert np.corrcoef(X.T)[0, 1] > 0.99
    assert abs(np.corrcoef(Y.T)[0, 1]) < 0.05
    gen = torch.Generator().manual_seed(0)
    Z = FeaturePermutation().fit(X).sample(torch.as_tensor(X), gen).numpy()
    assert abs(np.corrcoef(Z.T)[0, 1]) < 0.05


def test_permutation_is_reproducible_with_a_seed():
    X = np.random.RandomState(0).normal(size=(50, 3))
    perm = FeaturePermutation(random_state=3).fit(X)
    np.testing.assert_array_equal(perm.transform(X), perm.transform(X))
    other = FeaturePermutation(random_state=4).fit_transform(X)
    assert not np.array_equal(perm.transform(X), other)


@given(X=matrices, margin=st.floats(0, 2), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=50, deadline=None)
def test_uniform_box_stays_in_the_widened_box(X, margin, seed):
    box = UniformBox(margin=margin, random_state=seed).fit(X)
    width = X.max(axis=0) - X.min(axis=0)
    np.testing.assert_allclose(box.low_, X.min(axis=0) - margin * width)
    np.testing.assert_allclose(box.high_, X.max(axis=0) + margin * width)
    gen = torch.Generator().manual_seed(seed)
    for Y in (box.transform(X), box.sample(torch.as_tensor(X), gen).numpy()):
        assert Y.shape == X.shape
        assert (Y >= box.low_ - 1e-9 * (1 + abs(box.low_))).all()
        assert (Y <= box.high_ + 1e-9 * (1 + abs(box.high_))).all()


def test_uniform_box_fills_the_box():
    X = np.array([[0.0, -1.0], [1.0, 1.0]])
    Y = UniformBox(margin=0.5, random_state=0).fit(X).transform(np.zeros((20000, 2)))
    np.testing.assert_allclose(Y.mean(axis=0), [0.5, 0.0], atol=0.05)
    np.testing.assert_allclose(Y.min(axis=0), [-0.5, -2.0], atol=0.01)
    np.testing.assert_allclose(Y.max(axis=0), [1.5, 2.0], atol=0.01)


@pytest.mark.parametrize("cls", [ContrastiveFlowDetector, LikelihoodRatioDetector],
                         ids=lambda c: c.__name__)
def test_errors_about_x_aux_name_x_aux_and_the_detector_called(cls):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 4))
    det = cls(max_epochs=1, n_blocks=2, hidden_size=8, random_state=0)
    with pytest.raises(ValueError, match=rf"X_aux has 3 features, but {cls.__name__} is "
                                         "fitted on X with 4 features"):
        det.fit(X, X_aux=rng.normal(size=(30, 3)))
    with_nan = rng.normal(size=(30, 4))
    with_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X_aux contains NaN"):
        det.fit(X, X_aux=with_nan)
    with pytest.raises(ValueError, match="X_aux's columns differ"):
        det.fit(pd.DataFrame(X, columns=list("abcd")),
                X_aux=pd.DataFrame(X[:30], columns=list("abdc")))


def test_a_one_row_x_aux_for_the_likelihood_ratio_names_the_ratio():
    rng = np.random.RandomState(0)
    det = LikelihoodRatioDetector(max_epochs=1, n_blocks=2, hidden_size=8, random_state=0)
    with pytest.raises(ValueError, match="X_aux has 1 row.*LikelihoodRatioDetector fits its "
                                         "general flow on X_aux and needs at least 2"):
        det.fit(rng.normal(size=(60, 4)), X_aux=rng.normal(size=(1, 4)))
