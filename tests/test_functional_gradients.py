"""Gradients of loss terms through torch.func: equal to autograd's, compiled once per term."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sklearn_flowod import ContrastiveFlowDetector, FlowDetector
from sklearn_flowod.detectors.flow import BaseFlowDetector
from sklearn_flowod.functional_gradients import (
    EvaluatedNetwork,
    accumulate_gradients,
    term_gradients,
)
from sklearn_flowod.padded_coupling import PaddedCouplingForward
from sklearn_flowod.training_step import TrainingStep, row_mean_loss

from .conftest import no_compiler, trained_looking_flow


def test_the_evaluated_network_calls_the_view_with_the_networks_parameters():
    inn = trained_looking_flow(6, 0, n_blocks=2, dtype=torch.float32)
    x = torch.randn(5, 6)
    padded = EvaluatedNetwork(inn, PaddedCouplingForward(inn))
    itself = EvaluatedNetwork(inn, inn)
    assert itself.view is None and padded.view is not None
    for evaluated in (padded, itself):
        torch.testing.assert_close(evaluated(x, jac=True), inn(x, jac=True))
        names = set(evaluated.trainable_parameters())
        assert names == {f"network.{name}" for name, p in inn.named_parameters()
                         if p.requires_grad}
    # the fixed rotations are buffers: never differentiated
    assert not any("w_perm" in name for name in itself.trainable_parameters())


@settings(max_examples=15, deadline=None)
@given(n_features=st.integers(2, 20), rows=st.integers(1, 30), seed=st.integers(0, 2**16),
       padded=st.booleans())
def test_term_gradients_equal_autograds(n_features, rows, seed, padded):
    inn = trained_looking_flow(n_features, seed, n_blocks=2, dtype=torch.float32)
    batch = torch.randn(rows, n_features, generator=torch.Generator().manual_seed(seed))
    term = BaseFlowDetector._nll
    term(inn, batch).backward()
    expected = {f"network.{name}": p.grad for name, p in inn.named_parameters()
                if p.requires_grad}
    evaluated = EvaluatedNetwork(inn, PaddedCouplingForward(inn) if padded else inn)
    with torch.no_grad():
        gradients, value = term_gradients(term)(term, evaluated,
                                               evaluated.trainable_parameters(), batch)
    torch.testing.assert_close(value, term(inn, batch).detach())
    assert gradients.keys() == expected.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected[name], rtol=1e-4, atol=1e-6)


def test_each_term_code_has_a_gradient_function_of_its_own():
    first, second = (ContrastiveFlowDetector()._training_loss().terms[1] for _ in range(2))
    assert term_gradients(first) is term_gradients(second)
    assert term_gradients(FlowDetector._nll) is term_gradients(BaseFlowDetector._nll)
    nll, contrastive = term_gradients(FlowDetector._nll), term_gradients(first)
    assert nll is not contrastive and nll.__code__ is not contrastive.__code__
    assert "_nll" in nll.__name__ and "ClampedRowMean" in contrastive.__name__


def test_accumulate_gradients_adds_or_sets():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    accumulate_gradients([a, b], [torch.full((3,), 2.0), torch.full((2,), 4.0)], alpha=0.5)
    assert torch.equal(a.grad, torch.ones(3)) and torch.equal(b.grad, torch.full((2,), 2.0))
    accumulate_gradients([a, b], [torch.ones(3), torch.ones(2)])
    assert torch.equal(a.grad, torch.full((3,), 2.0)) and torch.equal(b.grad, torch.full((2,), 3.0))
    b.grad = None
    accumulate_gradients([a, b], [torch.ones(3), torch.ones(2)], alpha=-1.0)
    assert torch.equal(a.grad, torch.ones(3)) and torch.equal(b.grad, -torch.ones(2))


@pytest.mark.skipif(no_compiler(), reason="torch.compile needs a C++ compiler on a CPU")
def test_a_compiled_step_matches_an_eager_one_and_later_fits_reuse_the_graphs():
    from torch._dynamo.utils import counters

    inn, copy = (trained_looking_flow(5, 1, n_blocks=2, dtype=torch.float32)
                 for _ in range(2))
    batch = torch.randn(64, 5, generator=torch.Generator().manual_seed(2))
    loss = row_mean_loss(BaseFlowDetector._nll)
    eager = TrainingStep(inn, loss)(batch, torch.Generator())
    compiled = TrainingStep(copy, loss, compile=True)(batch, torch.Generator())
    torch.testing.assert_close(compiled, eager)
    for p, q in zip(inn.parameters(), copy.parameters(), strict=True):
        if p.requires_grad:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)

    X = np.random.RandomState(0).normal(size=(96, 3))
    params = {"n_blocks": 1, "hidden_size": 4, "max_epochs": 1, "batch_size": 32,
              "validation_fraction": None, "compile": True}
    FlowDetector(**params, random_state=0).fit(X)
    counters.clear()
    FlowDetector(**params, random_state=1).fit(X)
    assert not counters["stats"]["unique_graphs"]  # nothing compiled anew
