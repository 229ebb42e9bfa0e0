"""The feature-major training pass computes FrEIA's maths, gradients included."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_flowod import FlowDetector, InvertibleOneClassDetector
from sklearn_flowod._engine.coupling_pass import CouplingPass
from sklearn_flowod.networks import build_inn, exact_inverse_permutations

from .conftest import FLOW_SHAPES, trained_looking_inn


def _gradients(inn, z, log_det):
    loss = z.square().sum() + (0.0 if log_det is None else log_det.sum())
    return torch.autograd.grad(loss, [p for p in inn.parameters() if p.requires_grad])


@settings(max_examples=30, deadline=None)
@given(**FLOW_SHAPES, rev=st.booleans(), jac=st.booleans())
def test_equals_freia_with_gradients(n_features, n_blocks, hidden_size, soft, n_rows, rev,
                                     jac, seed):
    inn = trained_looking_inn(n_features, n_blocks, hidden_size, soft, seed)
    x = torch.randn(n_rows, n_features, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    z_ref, log_det_ref = inn(x, rev=rev, jac=True)
    z, log_det = CouplingPass(inn)(x, rev=rev, jac=jac)
    np.testing.assert_allclose(z.detach().numpy(), z_ref.detach().numpy(), rtol=1e-10,
                               atol=1e-10)
    if not jac:
        assert log_det is None
        log_det_ref = None
    else:
        np.testing.assert_allclose(log_det.detach().numpy(), log_det_ref.detach().numpy(),
                                   rtol=1e-10, atol=1e-10)
    for ours, freia in zip(_gradients(inn, z, log_det), _gradients(inn, z_ref, log_det_ref),
                           strict=True):
        np.testing.assert_allclose(ours.numpy(), freia.numpy(), rtol=1e-8, atol=1e-10)


def test_inverse_undoes_the_forward_pass():
    inn = exact_inverse_permutations(trained_looking_inn(6, 3, 8, True, 0))
    view = CouplingPass(inn)
    x = torch.randn(25, 6, dtype=torch.float64)
    with torch.no_grad():
        z, log_det = view(x)
        x_back, log_det_back = view(z, rev=True)
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=1e-10)
    np.testing.assert_allclose(log_det_back.numpy(), -log_det.numpy(), atol=1e-10)


def test_the_pass_holds_the_flows_parameters():
    inn = build_inn(4, n_blocks=2, hidden_size=5, affine_clamping=2.0)
    view = CouplingPass(inn)
    assert [id(p) for p in view.parameters()] == [id(p) for p in inn.parameters()]
    view.load_state_dict({name: torch.zeros_like(t) for name, t in view.state_dict().items()})
    assert all(bool((p == 0).all()) for p in inn.parameters())


@pytest.mark.parametrize("detector", [FlowDetector, InvertibleOneClassDetector])
def test_training_leaves_a_plain_freia_network(detector):
    X = np.random.RandomState(0).normal(size=(120, 3))
    fitted = detector(max_epochs=2, random_state=0).fit(X)
    assert type(fitted.module_).__name__ == "SequenceINN"
    assert fitted.module_.module_list[0].subnet[0].weight.dtype == torch.float64
