"""Training on one flat parameter buffer: views in, own storage out, same steps."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sklearn_flowod.flat_parameters import flat_parameters
from sklearn_flowod.training import _clip_grad_norm


def _network(seed=0):
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    network[0].bias.requires_grad_(False)  # a frozen parameter stays out of the buffer
    return network


def _loss(network, seed=1):
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(seed))
    return network(x).square().sum()


def test_inside_the_block_parameters_and_gradients_are_views_of_one_buffer():
    network = _network()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    trainable = [p for p in network.parameters() if p.requires_grad]
    with flat_parameters(network) as parameters:
        (flat,) = parameters
        assert flat.numel() == sum(p.numel() for p in trainable) == 5 * 3 + 2 * 5 + 2
        # the same parameter objects, the same values
        for key, value in network.state_dict().items():
            assert torch.equal(value, before[key])
        assert torch.count_nonzero(flat.grad) == 0
        _loss(network).backward()
        assert torch.equal(flat.grad, torch.cat([p.grad.reshape(-1) for p in trainable]))
        with torch.no_grad():
            flat.add_(1.0)  # an optimiser's in-place step reaches every weight
        for p in trainable:
            assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    for key, value in network.state_dict().items():
        shift = 0.0 if key == "0.bias" else 1.0
        torch.testing.assert_close(value, before[key] + shift)
    # afterwards each parameter owns its storage again, without a gradient
    pointers = {p.untyped_storage().data_ptr() for p in network.parameters()}
    assert len(pointers) == len(list(network.parameters()))
    assert all(p.grad is None for p in network.parameters())


def test_gradients_accumulate_in_the_buffer_until_cleared_in_place():
    network = _network()
    with flat_parameters(network) as (flat,):
        _loss(network).backward()
        once = flat.grad.clone()
        _loss(network).backward()
        torch.testing.assert_close(flat.grad, 2 * once)
        network.zero_grad(set_to_none=False)
        assert torch.count_nonzero(flat.grad) == 0
        _loss(network).backward()
        torch.testing.assert_close(flat.grad, once)


def test_parameters_of_several_dtypes_are_left_as_they_are():
    network = _network()
    network[2].double()
    members = [p for p in network.parameters() if p.requires_grad]
    with flat_parameters(network) as parameters:
        assert len(parameters) == len(members)
        assert all(a is b for a, b in zip(parameters, members, strict=True))


def test_adam_on_the_buffer_takes_the_same_steps_as_on_the_parameters():
    reference, flat_network = _network(), _network()
    optimizer = torch.optim.Adam(
        [p for p in reference.parameters() if p.requires_grad], lr=0.01, fused=True)
    for seed in range(5):
        optimizer.zero_grad()
        _loss(reference, seed).backward()
        optimizer.step()
    with flat_parameters(flat_network) as parameters:
        flat_optimizer = torch.optim.Adam(parameters, lr=0.01, fused=True)
        for seed in range(5):
            flat_network.zero_grad(set_to_none=False)
            _loss(flat_network, seed).backward()
            flat_optimizer.step()
    for a, b in zip(reference.parameters(), flat_network.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(
    scale=st.floats(1e-3, 1e3),
    max_norm=st.floats(1e-2, 10.0),
    seed=st.integers(0, 2**16),
)
def test_clipping_one_flat_gradient_matches_torch(scale, max_norm, seed):
    rng = np.random.RandomState(seed)
    gradient = torch.as_tensor(scale * rng.normal(size=40))
    ours, theirs = (nn.Parameter(torch.zeros(40, dtype=torch.float64)) for _ in range(2))
    ours.grad, theirs.grad = gradient.clone(), gradient.clone()
    _clip_grad_norm([ours], max_norm)
    nn.utils.clip_grad_norm_([theirs], max_norm)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-12, atol=0.0)
    assert float(ours.grad.norm()) <= max_norm * (1 + 1e-9)


def test_clipping_several_gradients_is_torchs():
    grads = [torch.full((3,), 4.0), torch.full((2,), -3.0)]
    ours = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    theirs = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, q, g in zip(ours, theirs, grads, strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    _clip_grad_norm(ours, 1.0)
    nn.utils.clip_grad_norm_(theirs, 1.0)
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p.grad, q.grad)
    assert float(torch.cat([p.grad for p in ours]).norm()) == pytest.approx(1.0, rel=1e-5)
