"""The folded coupling-flow evaluator computes FrEIA's forward pass."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from sklearn_flowod import FlowDetector
from sklearn_flowod._engine.folded import CouplingEvaluator, scoring_view
from sklearn_flowod.networks import build_inn

from .conftest import FLOW_SHAPES, trained_looking_inn


@settings(max_examples=25, deadline=None)
@given(**FLOW_SHAPES)
def test_equals_freia_forward(n_features, n_blocks, hidden_size, soft, n_rows, seed):
    inn = trained_looking_inn(n_features, n_blocks, hidden_size, soft, seed)
    x = torch.randn(n_rows, n_features, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64) * 2
    with torch.inference_mode():
        z_ref, log_det_ref = inn(x, jac=True)
        z, log_det = CouplingEvaluator(inn)(x)
    np.testing.assert_allclose(z.numpy(), z_ref.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(log_det.numpy(), log_det_ref.numpy(), rtol=1e-11, atol=1e-11)


def test_without_jacobian_returns_the_same_codes():
    inn = trained_looking_inn(5, 3, 8, True, 0)
    x = torch.randn(17, 5, dtype=torch.float64)
    evaluator = CouplingEvaluator(inn)
    z, log_det = evaluator(x, jac=False)
    assert log_det is None
    assert torch.equal(z, evaluator(x)[0])


def test_evaluator_does_not_track_gradients_or_alias_its_input():
    inn = trained_looking_inn(4, 2, 6, False, 1)
    x = torch.randn(10, 4, dtype=torch.float64)
    before = x.clone()
    z, _ = scoring_view(inn)(x)
    assert torch.equal(x, before)
    assert not z.requires_grad


def test_view_is_cached_until_a_weight_changes():
    inn = trained_looking_inn(4, 2, 6, True, 2)
    x = torch.randn(9, 4, dtype=torch.float64)
    view = scoring_view(inn)
    assert scoring_view(inn) is view
    with torch.no_grad():
        inn.module_list[1].global_offset.add_(0.5)
    changed = scoring_view(inn)
    assert changed is not view
    with torch.inference_mode():
        z_ref, _ = inn(x)
    np.testing.assert_allclose(changed(x)[0].numpy(), z_ref.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_features", [1, 2, 7])
def test_detector_scores_equal_freia_scores(n_features):
    X = np.random.RandomState(0).normal(size=(300, n_features))
    detector = FlowDetector(max_epochs=3, n_neighbors=None, random_state=0).fit(X)
    with torch.inference_mode():
        batch = detector._to_model_input(X, torch.float64)
        reference = -detector._rows_negative_log_density(detector.module_, batch).numpy()
    np.testing.assert_allclose(detector.score_samples(X), reference, rtol=1e-12, atol=1e-10)


def test_a_flow_made_in_inference_mode_is_folded_without_caching():
    with torch.inference_mode():
        inn = build_inn(3, n_blocks=2, hidden_size=4, affine_clamping=2.0).double()
        x = torch.randn(12, 3, dtype=torch.float64)
        z_ref, log_det_ref = inn(x)
        z, log_det = scoring_view(inn)(x)
    assert isinstance(scoring_view(inn), CouplingEvaluator)
    np.testing.assert_allclose(z.numpy(), z_ref.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det.numpy(), log_det_ref.numpy(), rtol=1e-12, atol=1e-12)
