"""Fitted detectors and pipelines exported to ONNX score as the package does."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from benchmarks import adbench
from sklearn_flowod import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from sklearn_flowod.datasets import make_fraud_like

skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
sklearn_flowod_onnx = pytest.importorskip("sklearn_flowod.onnx")

#: The defaults, with a short training (the exported graph does not depend on it).
DETECTORS = [cls(max_epochs=3, random_state=0) for cls in (
    FlowDetector, ContrastiveFlowDetector, LikelihoodRatioDetector,
    InvertibleOneClassDetector, DeepSVDDDetector)]
IDS = [type(d).__name__ for d in DETECTORS]
#: onnxruntime's scores may differ from decision_function by this share of their spread.
TOLERANCE = 1e-4


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _check_same_scores(model, pipeline, X):
    session = _session(model)
    label, scores = session.run(None, {session.get_inputs()[0].name: X})
    expected = pipeline.decision_function(X)
    assert label.shape == scores.shape == (X.shape[0], 1) and label.dtype == np.int64
    error = np.abs(scores[:, 0].astype(np.float64) - expected)
    assert error.max() <= TOLERANCE * expected.std()
    # labels agree wherever the score is clearly on one side of the threshold
    clear = np.abs(expected) > TOLERANCE * expected.std()
    np.testing.assert_array_equal(label[clear, 0], pipeline.predict(X)[clear])


def _fraud_rows():
    X, y = make_fraud_like(14_000, random_state=0)
    X = X.astype(np.float32)
    return X[:4_000][y[:4_000] == 0], X[4_000:]


def _dev_set(name):
    if name not in adbench.available():
        pytest.skip(f"the ADBench file {name} is not here")
    split = adbench.load_split(name, 0)
    return split.X_train.astype(np.float32), split.X_test.astype(np.float32)


@pytest.mark.parametrize("data", ["fraud_like", "6_cardio", "29_Pima"])
@pytest.mark.parametrize("detector", DETECTORS, ids=IDS)
def test_an_exported_detector_scores_as_decision_function(detector, data):
    X_train, X_test = _fraud_rows() if data == "fraud_like" else _dev_set(data)
    fitted = detector.fit(X_train)
    model = skl2onnx.to_onnx(fitted, X_train[:1])
    _check_same_scores(model, fitted, X_test[:10_000])


@pytest.mark.parametrize("data", ["fraud_like", "6_cardio", "29_Pima"])
@pytest.mark.parametrize("detector", DETECTORS, ids=IDS)
def test_a_column_transformer_pipeline_exports_whole(detector, data):
    # scaled numeric columns and a one-hot category (the first column cut at its quartiles)
    X_train, X_test = _fraud_rows() if data == "fraud_like" else _dev_set(data)
    edges = np.quantile(X_train[:, 0], [0.25, 0.5, 0.75])

    def with_category(X):
        # float64: the preprocessing then rounds as scikit-learn's does on float64 rows
        # (float32 scaling rounds differently in the two, which far outliers magnify)
        return np.hstack([X[:, 1:], np.digitize(X[:, :1], edges)]).astype(np.float64)

    X_train, X_test = with_category(X_train), with_category(X_test[:10_000])
    n_numeric = X_train.shape[1] - 1
    pipeline = make_pipeline(
        ColumnTransformer([("numbers", StandardScaler(), list(range(n_numeric))),
                           ("category", OneHotEncoder(sparse_output=False), [n_numeric])]),
        detector)
    pipeline.fit(X_train)
    model = skl2onnx.to_onnx(pipeline, X_train[:1])
    _check_same_scores(model, pipeline, X_test)


@pytest.mark.parametrize("cls", [FlowDetector, InvertibleOneClassDetector])
def test_known_anomalies_in_the_neighbour_score_export(cls):
    X_train, X_test = _dev_set("6_cardio")
    y = np.where(np.arange(len(X_train)) % 50 == 0, -1, 1)  # some rows as known anomalies
    fitted = cls(max_epochs=3, random_state=0, known_anomaly_weight=1.0).fit(X_train, y)
    assert fitted.neighbours_.center.shape == (5,)
    _check_same_scores(skl2onnx.to_onnx(fitted, X_train[:1]), fitted, X_test)


def test_a_model_without_neighbours_exports_weights_only():
    X_train, X_test = _fraud_rows()
    detector = FlowDetector(max_epochs=3, random_state=0, n_neighbors=None).fit(X_train)
    default = FlowDetector(max_epochs=3, random_state=0).fit(X_train)
    light = skl2onnx.to_onnx(detector, X_train[:1])
    heavy = skl2onnx.to_onnx(default, X_train[:1])
    _check_same_scores(light, detector, X_test[:2_000])
    # the default file holds the reference rows and their codes
    reference = default.neighbours_.n_reference * X_train.shape[1] * 2 * 8
    assert len(heavy.SerializeToString()) - len(light.SerializeToString()) >= reference


def test_non_finite_scores_are_the_most_anomalous_in_the_graph_too():
    X_train, _ = _fraud_rows()
    detector = LikelihoodRatioDetector(max_epochs=3, random_state=0).fit(X_train)
    model = skl2onnx.to_onnx(detector, X_train[:1].astype(np.float64))
    X = X_train[:3].astype(np.float64)
    X[0, 0] = 1e300
    session = _session(model)
    label, scores = session.run(None, {session.get_inputs()[0].name: X})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = detector.decision_function(X)
    assert expected[0] == -np.inf and scores[0, 0] == -np.inf and label[0, 0] == -1


def test_what_cannot_be_exported_is_refused_at_conversion():
    X = np.random.RandomState(0).normal(size=(200, 1)).astype(np.float32)
    one_feature = FlowDetector(max_epochs=2, random_state=0).fit(X)
    with pytest.raises(NotImplementedError, match="one feature integrates the padding column"):
        skl2onnx.to_onnx(one_feature, X[:1])
    # the one-class network has no density to integrate: it exports on one feature too
    one_class = InvertibleOneClassDetector(max_epochs=2, random_state=0).fit(X)
    _check_same_scores(skl2onnx.to_onnx(one_class, X[:1]), one_class, X)
    X2 = np.random.RandomState(0).normal(size=(200, 3)).astype(np.float32)
    flow = FlowDetector(max_epochs=2, random_state=0).fit(X2)
    with pytest.raises(RuntimeError, match="target_opset >= 18"):
        skl2onnx.to_onnx(flow, X2[:1], target_opset=17)


_SCORE_ELSEWHERE = """
import sys
sys.modules["torch"] = sys.modules["sklearn_flowod"] = None  # neither may be imported
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
X = np.load(sys.argv[2])
label, scores = session.run(None, {session.get_inputs()[0].name: X})
np.save(sys.argv[3], scores)
"""


def test_an_exported_file_scores_without_torch_or_the_package(tmp_path):
    X_train, X_test = _fraud_rows()
    detector = ContrastiveFlowDetector(max_epochs=3, random_state=0).fit(X_train)
    path = tmp_path / "detector.onnx"
    path.write_bytes(skl2onnx.to_onnx(detector, X_train[:1]).SerializeToString())
    np.save(tmp_path / "rows.npy", X_test[:500])
    subprocess.run([sys.executable, "-c", _SCORE_ELSEWHERE, str(path),
                    str(tmp_path / "rows.npy"), str(tmp_path / "scores.npy")],
                   check=True, capture_output=True, timeout=300)
    scores = np.load(tmp_path / "scores.npy")[:, 0]
    expected = detector.decision_function(X_test[:500])
    assert np.abs(scores - expected).max() <= TOLERANCE * expected.std()
