"""Properties of the invertible network builder."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_flowod.networks import build_inn, exact_inverse_permutations, random_rotation


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


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_random_rotation_is_orthogonal(n, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        q = random_rotation(n)
    assert q.shape == (n, n) and q.dtype == torch.float64
    torch.testing.assert_close(q @ q.T, torch.eye(n, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(q.T @ q, torch.eye(n, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_random_rotation_is_uniform_on_the_orthogonal_group():
    # Haar measure: each column is uniform on the sphere, so an entry has mean 0
    # and variance 1/n; the trace has mean 0 and second moment 1; the
    # determinant is +1 or -1 with probability 1/2 (a QR factor whose signs
    # were not fixed would fail these)
    n, draws = 3, 4000
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        q = torch.stack([random_rotation(n) for _ in range(draws)])
    entries = q.reshape(draws, -1)
    standard_error = (1.0 / n / draws) ** 0.5
    assert entries.mean(dim=0).abs().max() < 5 * standard_error
    np.testing.assert_allclose(entries.square().mean(dim=0).numpy(), 1.0 / n, rtol=0.1)
    trace = q.diagonal(dim1=1, dim2=2).sum(dim=1)
    assert abs(float(trace.mean())) < 5 / draws**0.5
    assert float(trace.square().mean()) == pytest.approx(1.0, rel=0.1)
    positive = float((torch.linalg.det(q) > 0).double().mean())
    assert positive == pytest.approx(0.5, abs=5 * 0.5 / draws**0.5)


def test_soft_permutation_build_leaves_the_global_generators_alone():
    np.random.seed(5)
    torch.manual_seed(5)
    numpy_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    a = build_inn(7, n_blocks=3, hidden_size=8, affine_clamping=2.0, soft_permutation=True,
                  seed=11)
    b = build_inn(7, n_blocks=3, hidden_size=8, affine_clamping=2.0, soft_permutation=True,
                  seed=11)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    rotations = [block.w_perm.squeeze() for block in a]
    assert all(torch.equal(r, block.w_perm.squeeze()) for r, block in zip(rotations, b,
                                                                           strict=True))
    # every block draws its own rotation, and the inverse is its transpose
    assert not torch.equal(rotations[0], rotations[1])
    for block in a:
        torch.testing.assert_close(block.w_perm_inv.squeeze(), block.w_perm.squeeze().T)


def test_soft_permutation_mixes_every_feature_into_both_halves():
    inn = build_inn(2, n_blocks=4, hidden_size=4, affine_clamping=2.0, soft_permutation=True,
                    seed=0)
    for block in inn:
        w = block.w_perm.squeeze()
        assert (w.abs() > 1e-6).all()  # with probability one a rotation has no zero
