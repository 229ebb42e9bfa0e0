"""The padded training forward pass: FrEIA's flow, gradients included, on full vectors."""

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sklearn_flowod.detectors.flow as flow_module
from sklearn_flowod import FlowDetector
from sklearn_flowod.padded_coupling import (
    PaddedCouplingForward,
    padded_view,
    padded_width,
)
from sklearn_flowod.training_step import TrainingStep, row_mean_loss

from .conftest import no_compiler, trained_looking_flow


@pytest.mark.parametrize(("width", "padded"),
                         [(4, 4), (8, 8), (9, 16), (15, 16), (16, 16), (20, 20), (64, 64)])
def test_halves_of_nine_to_fifteen_features_fill_one_vector(width, padded):
    assert padded_width(width) == padded


@settings(max_examples=20, deadline=None)
@given(n_features=st.integers(17, 33), seed=st.integers(0, 2**16))
def test_the_padded_pass_is_freias_with_the_same_gradients(n_features, seed):
    inn = trained_looking_flow(n_features, seed)
    x = torch.randn(37, n_features, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    z, log_jac_det = inn(x, jac=True)
    expected = torch.autograd.grad((z.square().sum() - log_jac_det.sum()),
                                   [p for p in inn.parameters() if p.requires_grad])
    padded = PaddedCouplingForward(inn)
    z_padded, log_jac_det_padded = padded(x, jac=True)
    torch.testing.assert_close(z_padded, z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_jac_det_padded, log_jac_det, rtol=1e-12, atol=1e-12)
    gradients = torch.autograd.grad(
        (z_padded.square().sum() - log_jac_det_padded.sum()),
        [p for p in inn.parameters() if p.requires_grad],
    )
    for ours, theirs in zip(gradients, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert padded(x, jac=False)[1] is None


@pytest.mark.parametrize("n_features", [8, 16, 34, 40])
def test_flows_without_halves_of_nine_to_sixteen_are_evaluated_as_they_are(n_features):
    inn = trained_looking_flow(n_features, 0)
    assert padded_view(inn) is inn


def test_only_foldable_flows_are_padded():
    assert isinstance(padded_view(trained_looking_flow(30, 0)), PaddedCouplingForward)
    # halves of 16: a full vector already, but the custom pass is faster there too
    assert isinstance(padded_view(trained_looking_flow(32, 0)), PaddedCouplingForward)
    other = nn.Sequential(nn.Linear(30, 30))
    assert padded_view(other) is other


def test_the_compiled_view_is_what_compiled_terms_evaluate():
    module = trained_looking_flow(30, 0)
    views = []

    def view(m):
        views.append(PaddedCouplingForward(m))
        return views[-1]

    assert TrainingStep(module, lambda m, b, g: b.sum(), compiled_view=view).compiled is None
    assert views == []  # eager steps evaluate the module itself
    step = TrainingStep(module, lambda m, b, g: b.sum(), compile=True, compiled_view=view)
    assert step.compiled_module is views[0]
    summed = TrainingStep(module, row_mean_loss(lambda m, b: b.sum()), compile=True,
                          compiled_view=view)
    assert summed.evaluated.view is views[1]


def test_compiled_training_of_a_flow_on_thirty_features_runs_the_padded_pass(monkeypatch):
    views = []

    def recording_view(module):
        views.append(padded_view(module))
        return views[-1]

    monkeypatch.setattr(flow_module, "padded_view", recording_view)
    X = np.random.RandomState(0).normal(size=(256, 30))
    params = {"n_blocks": 2, "hidden_size": 8, "max_epochs": 3, "batch_size": 64,
              "validation_fraction": None, "device": "cpu", "random_state": 0}
    with pytest.warns(RuntimeWarning) if no_compiler() else contextlib.nullcontext():
        compiled = FlowDetector(compile=True, **params).fit(X)
    eager = FlowDetector(**params).fit(X)
    assert len(views) == 1 and isinstance(views[0], PaddedCouplingForward)
    # 256 rows in batches of 64: the same batches, so nearly the same training
    np.testing.assert_allclose(compiled.loss_curve_, eager.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(compiled.score_samples(X), eager.score_samples(X), rtol=1e-3)
