"""Export fitted detectors, alone or in pipelines, to ONNX with skl2onnx.

Importing this module registers a converter for every detector of the
package with skl2onnx, so that ``skl2onnx.to_onnx(model, X[:1])`` converts a
fitted detector or a pipeline that ends in one (scikit-learn's scalers,
encoders and ``ColumnTransformer`` are skl2onnx's own)::

    import skl2onnx
    import sklearn_flowod.onnx  # registers the converters

    model = skl2onnx.to_onnx(pipeline, X[:1].astype(np.float32))

The graph has the outputs skl2onnx gives ``IsolationForest``: ``label``
(int64, +1 inlier, -1 outlier, shape (n, 1)) and ``scores`` (the detector's
``decision_function``, shape (n, 1), in the input's float type). It computes
in float64, as the package scores: the rows are cast once at the input.
The default score's nearest-neighbour part is included, its reference rows
(standardised training rows, and their codes, and any known anomalies the
detector was fitted with) as constants: the file then holds up to
``MAX_REFERENCE_ROWS`` training rows, as a pickled detector does; with
``n_neighbors=None`` it holds weights only. Scoring needs onnxruntime alone
(neither torch nor this package).

Not exported (a ``NotImplementedError`` at conversion): the flows and the
likelihood ratio fitted on one feature (their density integrates the
padding column out by quadrature), and a likelihood ratio whose general
model is not a flow of this package.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType
from torch import nn

from .. import (
    ContrastiveFlowDetector,
    DeepSVDDDetector,
    FlowDetector,
    InvertibleOneClassDetector,
    LikelihoodRatioDetector,
)
from ..detectors.flow import BaseFlowDetector
from ._graph import (
    MIN_OPSET,
    Graph,
    coupling_flow,
    negative_log_density,
    neighbour_score,
    standardised,
)

__all__ = ["MIN_OPSET", "register"]

DETECTORS = (FlowDetector, ContrastiveFlowDetector, LikelihoodRatioDetector,
             InvertibleOneClassDetector, DeepSVDDDetector)


def register() -> None:
    """Register the converters of every detector with skl2onnx (done on import)."""
    for cls in DETECTORS:
        update_registered_converter(cls, f"SklearnFlowod{cls.__name__}", _output_shapes,
                                    _convert)


def _output_shapes(operator) -> None:
    n_rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = Int64TensorType([n_rows, 1])
    operator.outputs[1].type.shape = [n_rows, 1]


def _convert(scope, operator, container) -> None:
    detector = operator.raw_operator
    g = Graph(scope, container, type(detector).__name__)
    raw = g.op("Cast", operator.inputs[0].full_name, to=TensorProto.DOUBLE)
    anomaly = _anomaly_score(g, detector, raw)
    # a score that is not finite counts as the most anomalous, as in anomaly_score
    bad = g.op("Or", g.op("IsNaN", anomaly), g.op("IsInf", anomaly))
    anomaly = g.op("Where", bad, g.const(np.inf), anomaly)
    decision = g.op("Sub", g.op("Neg", anomaly), g.const(detector.offset_, "offset"))
    decision = g.op("Unsqueeze", decision, g.const([1]))
    inlier = g.op("GreaterOrEqual", decision, g.const(0.0))
    g.container.add_node("Where", [inlier, g.const(np.array([1])), g.const(np.array([-1]))],
                         [operator.outputs[0].full_name], op_version=MIN_OPSET,
                         name=scope.get_unique_operator_name("Where"))
    is_double = isinstance(operator.outputs[1].type, DoubleTensorType)
    g.container.add_node("Cast", [decision], [operator.outputs[1].full_name],
                         to=TensorProto.DOUBLE if is_double else TensorProto.FLOAT,
                         op_version=MIN_OPSET, name=scope.get_unique_operator_name("Cast"))


def _model_input(g: Graph, detector, raw: str) -> str:
    """The network's input: standardised rows (one feature: padded with the noise's 0)."""
    x = standardised(g, raw, detector.mean_, detector.scale_ * detector._input_divisor_)
    if detector.n_features_in_ == 1:
        x = g.op("Concat", x, g.op("Mul", x, g.const(0.0)), axis=1)
    return x


def _anomaly_score(g: Graph, detector, raw: str) -> str:
    x = _model_input(g, detector, raw)
    if isinstance(detector, DeepSVDDDetector):
        return _svdd_score(g, detector, x)
    if isinstance(detector, InvertibleOneClassDetector):
        codes, _ = coupling_flow(g, x, detector.module_, jac=False)
        score = _cube_score(g, detector, codes)
    else:
        score, codes = _flow_score(g, detector, x)
        if isinstance(detector, LikelihoodRatioDetector):
            score = g.op("Sub", score, _general_score(g, detector, raw))
    if detector.neighbours_ is None:
        return score
    return neighbour_score(g, score, x, codes, detector.neighbours_)


def _flow_score(g: Graph, detector: BaseFlowDetector, x: str) -> tuple[str, str]:
    """``-log p(x)`` over the input features, and the codes."""
    if detector.n_features_in_ == 1:
        raise NotImplementedError(
            f"{type(detector).__name__} fitted on one feature integrates the padding column "
            "out by quadrature, which the ONNX export does not write; fit on two or more "
            "features to export it.")
    z, log_det = coupling_flow(g, x, detector.module_)
    return negative_log_density(g, z, log_det, detector.n_features_in_,
                                detector._input_space_correction()), z


def _general_score(g: Graph, detector: LikelihoodRatioDetector, raw: str) -> str:
    """The general flow's ``-log p_g(x)``, from the raw rows."""
    general = detector._general_flow()
    if not isinstance(general, BaseFlowDetector):
        raise NotImplementedError("Only a general model that is a flow of sklearn_flowod "
                                  f"can be exported, got {type(general).__name__}.")
    return _flow_score(g, general, _model_input(g, general, raw))[0]


def _cube_score(g: Graph, detector: InvertibleOneClassDetector, codes: str) -> str:
    """The one-class net's latent score of its codes (cube distance or pull)."""
    z = g.op("Div", codes, g.const(detector.latent_scale_, "latent_scale"))
    axes = g.const([1])
    magnitude = g.op("Abs", z)
    if detector.latent_score == "pull":
        if detector.pull == "max":
            return g.op("ReduceMax", magnitude, axes, keepdims=0)
        return g.op("ReduceMean", g.op("Mul", z, z), axes, keepdims=0)
    one = g.const(1.0)
    outside = g.op("ReduceSum", g.op("Relu", g.op("Sub", magnitude, one)), axes, keepdims=0)
    deepest = g.op("Sub", g.op("ReduceMax", magnitude, axes, keepdims=0), one)
    return g.op("Add", outside, g.op("Min", deepest, g.const(0.0)))


def _svdd_score(g: Graph, detector: DeepSVDDDetector, x: str) -> str:
    """Squared distance of the representation to the centre (minus R^2, soft-boundary)."""
    module = detector.module_
    for layer in module.encoder:
        if isinstance(layer, nn.Linear):
            x = g.op("MatMul", x, g.const(layer.weight.detach().cpu().numpy().T, "w"))
        else:  # a leaky ReLU, max(x, slope x) for a slope in [0, 1] (onnxruntime has
            # no float64 LeakyRelu)
            x = g.op("Max", x, g.op("Mul", x, g.const(float(layer.negative_slope))))
    difference = g.op("Sub", x, g.const(module.center.cpu().numpy(), "center"))
    distance = g.row_sum(g.op("Mul", difference, difference))
    if detector.objective == "soft-boundary":
        distance = g.op("Sub", distance, g.const(float(module.radius) ** 2, "radius2"))
    return distance


register()
