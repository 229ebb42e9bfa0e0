"""Summed losses: term-by-term backpropagation, compiled terms without graph breaks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sklearn_flowod import ContrastiveFlowDetector
from sklearn_flowod.training import train_module
from sklearn_flowod.training_step import SummedLoss, TrainingStep, as_summed_loss


def _two_term_loss(weight: float) -> SummedLoss:
    """Mean square of the outputs on the batch minus ``weight`` x on a shuffled copy."""

    def inputs(batch, generator):
        rows = torch.randperm(batch.shape[0], generator=generator)
        return (batch,), (batch[rows] + 1.0,)

    def first(module, x):
        return module(x).pow(2).mean()

    def second(module, y):
        return -weight * module(y).tanh().mean()

    return SummedLoss(inputs, (first, second))


def _module(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), weight=st.floats(0.0, 3.0), seed=st.integers(0, 2**16))
def test_term_by_term_gradients_equal_the_gradient_of_the_sum(rows, weight, seed):
    loss = _two_term_loss(weight)
    batch = torch.randn(rows, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    joint, split = _module(), _module()
    value = loss(joint, batch, torch.Generator().manual_seed(seed))
    value.backward()
    step_value = TrainingStep(split, loss)(batch, torch.Generator().manual_seed(seed))
    assert not step_value.requires_grad
    assert float(step_value) == pytest.approx(float(value.detach()), rel=1e-12, abs=1e-12)
    for a, b in zip(joint.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_a_plain_loss_is_a_one_term_sum_that_receives_the_generator():
    seen = []

    def loss(module, batch, generator):
        seen.append(generator)
        return module(batch).sum()

    summed = as_summed_loss(loss)
    generator = torch.Generator()
    summed(_module(), torch.ones(2, 3, dtype=torch.float64), generator)
    assert summed.terms == (loss,) and seen == [generator]
    assert as_summed_loss(summed) is summed


def test_inputs_and_terms_must_match_in_number():
    loss = SummedLoss(lambda batch, generator: ((batch,),), (lambda m, x: x.sum(),) * 2)
    with pytest.raises(ValueError, match="zip"):
        loss(_module(), torch.ones(2, 3), torch.Generator())


def test_training_on_a_summed_loss_matches_training_on_its_sum():
    loss = _two_term_loss(0.5)
    rows = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    summed, plain = _module(), _module()
    options = {"max_epochs": 4, "batch_size": 16, "learning_rate": 0.01}
    a = train_module(summed, loss, rows, generator=torch.Generator().manual_seed(0), **options)
    b = train_module(plain, lambda m, x, g: loss(m, x, g), rows,
                     generator=torch.Generator().manual_seed(0), **options)
    np.testing.assert_allclose(a.loss_curve, b.loss_curve, rtol=1e-10)
    for p, q in zip(summed.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_a_compiler_failing_in_the_second_term_restarts_the_step_eagerly(monkeypatch):
    calls = []

    def compile_second_badly(fn, **kwargs):
        calls.append(fn)
        if len(calls) == 1:
            return fn

        def broken(*args):
            raise RuntimeError("no C++ compiler")

        return broken

    monkeypatch.setattr(torch, "compile", compile_second_badly)
    loss = _two_term_loss(2.0)
    batch = torch.randn(8, 3, dtype=torch.float64)
    eager, fallback = _module(), _module()
    expected = TrainingStep(eager, loss)(batch, torch.Generator().manual_seed(3))
    step = TrainingStep(fallback, loss, compile=True)
    generator = torch.Generator().manual_seed(3)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        value = step(batch, generator)
    # the first term's gradient was dropped and the generator rewound
    assert float(value) == float(expected)
    for a, b in zip(eager.parameters(), fallback.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_the_compiled_contrastive_flow_has_no_graph_break():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # trace anew, even if an earlier test compiled the same terms
    counters.clear()
    X = np.random.RandomState(0).normal(size=(64, 3))
    ContrastiveFlowDetector(n_blocks=1, hidden_size=4, max_epochs=1, batch_size=32,
                            validation_fraction=None, compile=True, random_state=0).fit(X)
    assert counters["stats"]["unique_graphs"] > 0  # it did compile
    assert not counters["graph_break"]
