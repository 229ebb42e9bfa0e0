"""Conformal p-values and false-alarm thresholds: formula, guarantee, no retraining."""

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_flowod import FlowDetector
from sklearn_flowod.conformal import conformal_pvalues, conformal_threshold

from .conftest import small_detectors

DETECTORS = small_detectors()
ids = [type(d).__name__ for d in DETECTORS]
scores = arrays(np.float64, st.integers(1, 60), elements=st.floats(-5, 5).map(round))


@given(scores, scores)
def test_pvalues_are_the_share_of_calibration_scores_at_least_as_high(calibration, new):
    calibration = np.sort(calibration)
    expected = [(1 + np.sum(calibration >= s)) / (len(calibration) + 1) for s in new]
    p = conformal_pvalues(calibration, new)
    np.testing.assert_allclose(p, expected)
    assert np.all((p > 0) & (p <= 1))


@given(scores, scores, st.floats(0.001, 0.999), st.booleans())
def test_the_threshold_flags_exactly_the_rows_at_an_attainable_level(calibration, new, rate,
                                                                      at_most):
    calibration = np.sort(calibration)
    n = len(calibration)
    flagged = new > conformal_threshold(calibration, rate, at_most)
    levels = np.arange(n + 1) / (n + 1)  # the attainable rates k / (n + 1)
    level = levels[levels <= rate + 1e-12].max() if at_most else levels[
        np.argmin(np.abs(levels - rate) - 1e-12 * levels)]
    np.testing.assert_array_equal(flagged, conformal_pvalues(calibration, new) <= level + 1e-12)
    if at_most:
        np.testing.assert_array_equal(flagged, conformal_pvalues(calibration, new) <= rate)


@pytest.mark.parametrize("detector", DETECTORS, ids=ids)
def test_fit_calibrates_on_its_validation_split(detector, blobs):
    X, X_out = blobs
    det = clone(detector).set_params(validation_fraction=0.2).fit(X)
    assert det.calibration_scores_.shape == (60,)
    assert np.all(np.diff(det.calibration_scores_) >= 0)
    p = det.pvalues(np.vstack([X[:50], X_out]))
    assert np.all((p > 0) & (p <= 1))
    assert np.median(p[50:]) < np.median(p[:50])
    loaded = pickle.loads(pickle.dumps(det))
    np.testing.assert_allclose(loaded.pvalues(X_out), p[50:], rtol=1e-12)


@pytest.mark.parametrize("detector", DETECTORS, ids=ids)
def test_moving_the_threshold_trains_nothing(detector, blobs):
    X, X_out = blobs
    det = clone(detector).set_params(validation_fraction=0.2).fit(X)
    weights = {k: v.clone() for k, v in det.module_.state_dict().items()}
    versions = [p._version for p in det.module_.parameters()]
    curve = list(det.loss_curve_)
    rows = np.vstack([X, X_out])
    for rate in (0.02, 0.05, 0.1):
        det.set_false_alarm_rate(rate, at_most=True)
        np.testing.assert_array_equal(det.predict(rows) == -1, det.pvalues(rows) <= rate)
        det.set_false_alarm_rate(rate)
    state = det.module_.state_dict()
    assert state.keys() == weights.keys()
    assert all(state[k].equal(weights[k]) for k in weights)
    assert [p._version for p in det.module_.parameters()] == versions  # no in-place update
    assert all(p.grad is None for p in det.module_.parameters())
    assert det.loss_curve_ == curve


def test_calibrate_replaces_the_calibration_rows(blobs):
    X, _ = blobs
    det = clone(DETECTORS[3]).set_params(validation_fraction=None).fit(X)
    with pytest.raises(NotFittedError, match="calibrate"):
        det.pvalues(X)
    fresh = np.random.RandomState(1).normal(size=(99, 4))
    det.calibrate(fresh)
    np.testing.assert_allclose(det.calibration_scores_, np.sort(det.anomaly_score(fresh)))
    # a calibration row is at least as high as itself: (1 + k) / (n + 1), k = 1..n
    np.testing.assert_allclose(np.sort(det.pvalues(fresh)), np.arange(2, 101) / 100)


def test_too_few_calibration_rows_for_the_rate_warn_and_flag_nothing(blobs):
    X, X_out = blobs
    det = clone(DETECTORS[3]).fit(X).calibrate(X[:10])
    # 10 rows: the attainable rates are k / 11; 1% is nearer 0 than 1/11
    with pytest.warns(UserWarning, match="no row will be flagged"):
        det.set_false_alarm_rate(0.01)
    assert np.all(det.predict(X_out) == 1)
    with pytest.warns(UserWarning, match="at least 19 rows"):
        det.set_false_alarm_rate(0.05, at_most=True)  # 1/11 is above 5%
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.set_false_alarm_rate(0.05)  # the nearest attainable rate is 1/11
    assert np.any(det.predict(X_out) == -1)


@pytest.mark.parametrize("rate", [0, 1, -0.1, "5%"])
def test_rates_outside_the_open_unit_interval_are_refused(rate, blobs):
    det = clone(DETECTORS[3]).fit(blobs[0])
    with pytest.raises(ValueError, match="rate"):
        det.set_false_alarm_rate(rate)


def test_false_alarms_on_new_normal_rows_stay_at_the_requested_rate():
    rng = np.random.RandomState(0)
    det = FlowDetector(n_blocks=2, hidden_size=16, max_epochs=20, device="cpu",
                       random_state=0).fit(rng.normal(size=(2000, 3)))
    det.calibrate(rng.normal(size=(999, 3)))
    new = rng.normal(size=(20_000, 3))
    for rate in (0.01, 0.05, 0.1):
        flagged = np.mean(det.set_false_alarm_rate(rate).predict(new) == -1)
        # the calibration draw adds a binomial spread of sqrt(rate / 1000)
        assert abs(flagged - rate) < 4 * np.sqrt(rate / 1000) + 0.002
