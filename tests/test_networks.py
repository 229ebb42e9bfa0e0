"""Properties of the invertible network builder."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_flowod.networks import build_inn, exact_inverse_permutations


@settings(max_examples=25, deadline=None)
@given(
    n_features=st.integers(2, 24),
    n_blocks=st.integers(1, 8),
    hidden_size=st.integers(2, 64),
    n_rows=st.integers(1, 50),
    scale=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**16),
    soft=st.booleans(),
)
def test_forward_inverse_round_trip(n_features, n_blocks, hidden_size, n_rows, scale, seed, soft):
    inn = build_inn(
        n_features, n_blocks=n_blocks, hidden_size=hidden_size, affine_clamping=2.0,
        zero_init=False, soft_permutation=soft, seed=seed,
    )
    gen = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(n_rows, n_features, generator=gen, dtype=torch.float64)
    # scores are computed in float64, with the inverse mixing matrices made
    # exact as the detectors do after training
    inn = exact_inverse_permutations(inn.to(torch.float64))
    with torch.no_grad():
        z, log_jac = inn(x)
        x_back, log_jac_back = inn(z, rev=True)
    assert z.shape == x.shape and log_jac.shape == (n_rows,)
    assert (x_back - x).abs().max().item() < 1e-4
    torch.testing.assert_close(log_jac, -log_jac_back, atol=1e-6, rtol=1e-6)


def test_float32_round_trip_of_the_initial_network():
    # training runs in float32 from the zero-initialised couplings
    for soft in (False, True):
        inn = build_inn(12, n_blocks=6, hidden_size=64, affine_clamping=2.0,
                        soft_permutation=soft, seed=1)
        x = 3 * torch.randn(100, 12, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            x_back, _ = inn(inn(x)[0], rev=True)
        assert (x_back - x).abs().max().item() < 1e-4


def test_build_is_reproducible_and_leaves_rng_alone():
    state = np.random.get_state()[1].copy()
    a = build_inn(5, n_blocks=3, hidden_size=8, affine_clamping=2.0, seed=7)
    b = build_inn(5, n_blocks=3, hidden_size=8, affine_clamping=2.0, seed=7)
    c = build_inn(5, n_blocks=3, hidden_size=8, affine_clamping=2.0, seed=8)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_zero_init_starts_as_global_affine_only():
    inn = build_inn(4, n_blocks=2, hidden_size=8, affine_clamping=2.0, seed=0)
    x = torch.randn(10, 4)
    with torch.no_grad():
        z, _ = inn(x)
    # identity couplings, unit global scale, zero offset: only permutations remain
    torch.testing.assert_close(z.abs().sort(dim=1).values, x.abs().sort(dim=1).values)


def test_one_feature_is_refused():
    import pytest

    with pytest.raises(ValueError, match="at least 2 features"):
        build_inn(1, n_blocks=1, hidden_size=4, affine_clamping=2.0)


def test_soft_permutation_is_a_rotation_and_reproducible():
    a = build_inn(6, n_blocks=2, hidden_size=8, affine_clamping=2.0, soft_permutation=True, seed=3)
    b = build_inn(6, n_blocks=2, hidden_size=8, affine_clamping=2.0, soft_permutation=True, seed=3)
    for block_a, block_b in zip(a, b, strict=True):
        w = block_a.w_perm.squeeze()
        torch.testing.assert_close(w @ w.T, torch.eye(6), atol=1e-5, rtol=0)
        assert torch.equal(w, block_b.w_perm.squeeze())
        assert (w.abs() < 1 - 1e-6).any()  # not a permutation matrix
