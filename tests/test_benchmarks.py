"""The measuring tools of the speed benchmark (the quick quality run is in CI)."""

import math
import time

import numpy as np
import pytest
import torch

from benchmarks import adbench
from benchmarks.flops import count_flops
from benchmarks.instrumented_fit import instrumented_fit
from sklearn_flowod import ContrastiveFlowDetector, FlowDetector, LikelihoodRatioDetector

SMALL = {"n_blocks": 2, "hidden_size": 16, "device": "cpu", "random_state": 0,
         "validation_fraction": None}


def test_matmul_flops_are_counted_exactly():
    layer = torch.nn.Linear(6, 5, bias=False)
    x = torch.randn(7, 6)
    assert count_flops(layer, x) == 2 * 7 * 6 * 5


def test_instrumented_fit_times_the_main_loop_and_scores_every_epoch():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 3))
    X_test = np.r_[rng.normal(size=(100, 3)), rng.normal(loc=5.0, size=(20, 3))]
    y_test = np.r_[np.zeros(100), np.ones(20)]
    start = time.perf_counter()
    record = instrumented_fit(FlowDetector(max_epochs=4, **SMALL), X,
                              evaluation=(X_test, y_test))
    wall = time.perf_counter() - start
    assert record.n_epochs == 4 and record.n_samples_seen == 4 * 600
    # the FLOP count and the four AUROC checks are the benchmark's, not the fit's
    assert record.instrumentation_s > 0
    assert record.fit_s + record.instrumentation_s <= wall
    assert [epoch for epoch, _, _ in record.curve] == [1, 2, 3, 4]
    seconds = [s for _, s, _ in record.curve]
    assert seconds == sorted(seconds) and seconds[-1] <= record.train_s <= record.fit_s
    assert record.curve[-1][2] > 0.9
    assert record.time_to_auroc(0.0) <= record.fit_s
    assert math.isinf(record.time_to_auroc(1.1))
    # forward and backward of the matrix products: more than one forward pass
    forward = 2 * 2 * (2 * 16 + 16 * 2 * 1 + 3 * 3)  # two blocks, per row
    assert forward < record.flops_per_sample < 4 * forward


def test_instrumented_fit_measures_the_detector_not_its_inner_fits():
    X = np.random.RandomState(0).normal(size=(400, 3))
    record = instrumented_fit(LikelihoodRatioDetector(max_epochs=2, **SMALL), X)
    # the general flow is fitted on as many generated rows, inside fit: the record
    # belongs to the in-distribution flow's loop (one timing, one FLOP count)
    assert record.n_samples_seen == 2 * 400 and record.n_epochs == 2
    assert record.samples_per_s > 0


def test_instrumented_fit_counts_the_backpropagated_auxiliary_rows():
    # correlated features: in some batches every shuffled row falls under the clamp
    rng = np.random.RandomState(0)
    z, noise = rng.normal(size=(256, 1)), rng.normal(size=(256, 3))
    X = np.c_[z, z + 0.3 * noise[:, :1], 0.3 * noise[:, 1:2] - z, noise[:, 2:]]
    detector = ContrastiveFlowDetector(max_epochs=2, clamp=-4.0, batch_size=32, **SMALL)
    record = instrumented_fit(detector, X)
    # the main loop's steps: 2 epochs of 256 rows, each with one shuffled row
    assert record.clamped_rows == 2 * 256
    assert 0 < record.clamped_rows_backpropagated < record.clamped_rows
    assert record.backpropagated_fraction == record.clamped_rows_backpropagated / 512
    assert math.isnan(instrumented_fit(FlowDetector(max_epochs=1, **SMALL), X)
                      .backpropagated_fraction)


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_split_follows_the_protocol(seed):
    split = adbench.load_split(adbench.SYNTHETIC, seed)
    assert set(np.unique(split.y_test)) == {0, 1}
    np.testing.assert_allclose(split.X_train.mean(axis=0), 0.0, atol=1e-9)
    assert split.X_train.shape[1] == split.X_test.shape[1] == 14


def test_throughput_keeps_the_fastest_fit_and_the_higher_adjacent_matmul_rate(monkeypatch):
    from types import SimpleNamespace

    from benchmarks import speed

    rates = iter([150e9, 170e9])
    monkeypatch.setattr(speed, "matmul_rate", lambda dtype, seconds: next(rates))
    fits = iter([SimpleNamespace(samples_per_s=v) for v in (10.0, 30.0, 20.0)])
    record, rate = speed._timed_beside_matmul(lambda: next(fits), repeats=3, budget_s=60.0)
    assert record.samples_per_s == 30.0 and rate == 170e9
    # a fit over the budget is not repeated
    rates = iter([150e9, 140e9])
    fits = iter([SimpleNamespace(samples_per_s=5.0)])
    record, rate = speed._timed_beside_matmul(lambda: next(fits), repeats=3, budget_s=0.0)
    assert record.samples_per_s == 5.0 and rate == 150e9


def test_the_contrastive_reference_term_clamps_the_shuffled_batch_log_density():
    from benchmarks.reference_flow import (
        build_reference_flow,
        contrastive_term,
        negative_log_likelihood,
    )

    torch.manual_seed(0)
    flow = build_reference_flow(4, n_blocks=2, hidden_size=8)
    batch = torch.randn(32, 4)
    assert float(contrastive_term(flow, batch, clamp=1e6)) == 1e6
    torch.manual_seed(1)
    unclamped = contrastive_term(flow, batch, clamp=-math.inf)
    torch.manual_seed(1)
    order = torch.argsort(torch.rand(batch.shape), dim=0)
    shuffled = torch.gather(batch, 0, order)
    # every column keeps its values, the rows are mixed
    assert torch.equal(shuffled.sort(dim=0).values, batch.sort(dim=0).values)
    expected = -negative_log_likelihood(flow, shuffled).mean()
    torch.testing.assert_close(unclamped, expected)


def test_each_detector_is_compared_with_the_reference_loop_of_its_loss():
    from benchmarks.speed import REFERENCES, _reference_of

    assert _reference_of("ContrastiveFlowDetector (batch 4096, compiled)") == "contrastive"
    assert _reference_of("FlowDetector") == _reference_of("DeepSVDDDetector") == "flow"
    assert set(REFERENCES) == {"flow", "contrastive"}
