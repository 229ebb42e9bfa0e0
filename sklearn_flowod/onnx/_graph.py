"""The pieces of an exported scoring graph, written as ONNX operators.

Everything computes in float64 (the precision the package scores in): the
rows are cast once at the input, the score once at the output.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .._engine.folded import CouplingEvaluator, Permutation

#: The oldest ONNX opset the graphs are written for (``ReduceSum`` and
#: ``ReduceMax`` take their axes as an input from opset 18 on).
MIN_OPSET = 18


class Graph:
    """Adds operators and constants to the graph skl2onnx is building."""

    def __init__(self, scope, container, owner: str):
        self.scope, self.container, self.owner = scope, container, owner
        opset = container.target_opset
        if opset is not None and opset < MIN_OPSET:
            raise RuntimeError(f"Exporting {owner} needs target_opset >= {MIN_OPSET}, "
                               f"got {opset}.")

    def const(self, value, name: str = "c") -> str:
        """A float64 (or, for integer arrays, int64) constant."""
        value = np.asarray(value)
        kind = TensorProto.INT64 if value.dtype.kind in "iu" else TensorProto.DOUBLE
        value = value.astype(np.int64 if kind == TensorProto.INT64 else np.float64)
        out = self.scope.get_unique_variable_name(name)
        self.container.add_initializer(out, kind, list(value.shape), value.ravel().tolist())
        return out

    def const32(self, value, name: str = "c") -> str:
        """A float32 constant."""
        value = np.asarray(value, dtype=np.float32)
        out = self.scope.get_unique_variable_name(name)
        self.container.add_initializer(out, TensorProto.FLOAT, list(value.shape),
                                       value.ravel().tolist())
        return out

    def op(self, op_type: str, *inputs: str, n_outputs: int = 1, **attrs):
        """One operator of the default domain; returns its output's name (a list of
        names for ``n_outputs > 1``)."""
        outs = [self.scope.get_unique_variable_name(op_type.lower()) for _ in range(n_outputs)]
        self.container.add_node(op_type, list(inputs), outs,
                                name=self.scope.get_unique_operator_name(op_type),
                                op_version=MIN_OPSET, **attrs)
        return outs[0] if n_outputs == 1 else outs

    def columns(self, x: str, start: int, stop: int) -> str:
        """``x[:, start:stop]``."""
        return self.op("Slice", x, self.const([start]), self.const([stop]), self.const([1]))

    def row_sum(self, x: str) -> str:
        """Sum over axis 1, shape (n,)."""
        return self.op("ReduceSum", x, self.const([1]), keepdims=0)


def standardised(g: Graph, x: str, mean: np.ndarray, scale: np.ndarray) -> str:
    """``(x - mean) / scale`` of float64 rows."""
    return g.op("Div", g.op("Sub", x, g.const(mean, "mean")), g.const(scale, "scale"))


def coupling_flow(g: Graph, x: str, module, jac: bool = True) -> tuple[str, str | None]:
    """The codes and (with ``jac``) ``log |det J|`` of a trained coupling flow, from
    its folded form (:class:`~sklearn_flowod._engine.folded.CouplingEvaluator`)."""
    flow = CouplingEvaluator(module)
    n_passive, n_active = flow.n_passive, flow.n_active
    log_det = None
    for first, last, mixing, clamp, _ in flow.layers:
        first, last = first.detach().cpu().numpy(), last.detach().cpu().numpy()
        passive = g.columns(x, 0, n_passive)
        active = g.columns(x, n_passive, n_passive + n_active)
        units = g.op("Relu", g.op("Gemm", passive, g.const(first[:, 1:], "w"),
                                  g.const(first[:, 0], "b"), transB=1))
        coupling = g.op("Gemm", units, g.const(last[:, :-1], "w"), g.const(last[:, -1], "b"),
                        transB=1)
        log_scale = g.op("Tanh", g.columns(coupling, 0, n_active))
        if jac:
            block = g.op("Mul", g.row_sum(log_scale), g.const(clamp, "clamp"))
            log_det = block if log_det is None else g.op("Add", log_det, block)
        factor = g.op("Exp", g.op("Mul", log_scale, g.const(clamp, "clamp")))
        shift = g.columns(coupling, n_active, 2 * n_active)
        moved = g.op("Add", g.op("Mul", active, factor), shift)
        state = g.op("Concat", passive, moved, axis=1)
        if isinstance(mixing, Permutation):
            gathered = g.op("Gather", state, g.const(mixing.source.cpu().numpy(), "source"),
                            axis=1)
            x = g.op("Add", g.op("Mul", gathered, g.const(mixing.factor.cpu().numpy()[:, 0])),
                     g.const(mixing.shift.cpu().numpy()[:, 0], "shift"))
        else:
            matrix = mixing.detach().cpu().numpy()
            x = g.op("Gemm", state, g.const(matrix[:, 1:], "mixing"),
                     g.const(matrix[:, 0], "offset"), transB=1)
    if jac:
        log_det = g.op("Add", log_det, g.const(float(flow.log_det), "log_det"))
    return x, log_det


def negative_log_density(g: Graph, z: str, log_jac_det: str, n_features: int,
                         correction: float) -> str:
    """``-log p``: ``|z|^2 / 2 + D/2 log(2 pi) - log|det J| - correction``."""
    constant = 0.5 * n_features * np.log(2 * np.pi) - correction
    half_square = g.op("Mul", g.row_sum(g.op("Mul", z, z)), g.const(0.5))
    return g.op("Add", g.op("Sub", half_square, log_jac_det), g.const(constant))


def kth_distance(g: Graph, x: str, reference: np.ndarray, k: int) -> str:
    """Euclidean distance of every row to its k-th nearest reference row, shape (n,).

    As the package's search does: a float32 product ranks the reference rows
    (``|y|^2 - 2 x.y``, ``TopK``), and the distance to the k-th of them is
    computed in float64 from the coordinate differences.
    """
    ranking = g.op("Gemm", g.op("Cast", x, to=TensorProto.FLOAT),
                   g.const32(-2.0 * reference, "ranker"),
                   g.const32(np.square(reference).sum(axis=1), "norms"), transB=1)
    _, order = g.op("TopK", ranking, g.const([k]), n_outputs=2, axis=1, largest=0, sorted=1)
    kth = g.op("Squeeze", g.columns(order, k - 1, k), g.const([1]))
    difference = g.op("Sub", x, g.op("Gather", g.const(reference, "reference"), kth, axis=0))
    return g.op("Sqrt", g.row_sum(g.op("Mul", difference, difference)))


def neighbour_score(g: Graph, score: str, x: str, codes: str, neighbours) -> str:
    """The default score: the standardised sum of the network's score, the two
    k-th neighbour distances and, with known anomalies, the two ratios
    (:class:`~sklearn_flowod.neighbours.NeighbourScore`)."""
    k = neighbours.n_neighbors
    parts = [score,
             kth_distance(g, x, neighbours.inputs.rows.cpu().numpy(), k),
             kth_distance(g, codes, neighbours.codes.rows.cpu().numpy(), k)]
    if neighbours.known_inputs is not None:  # d_k / (d_k + d_a)
        for normal, rows, known in ((parts[1], x, neighbours.known_inputs),
                                    (parts[2], codes, neighbours.known_codes)):
            nearest = kth_distance(g, rows, known.rows.cpu().numpy(), 1)
            total = g.op("Max", g.op("Add", normal, nearest),
                         g.const(np.array(np.finfo(np.float64).tiny)))
            parts.append(g.op("Div", normal, total))
    center = neighbours.center.cpu().numpy()
    scale = neighbours.scale.cpu().numpy()
    total = None
    for part, c, s in zip(parts, center, scale, strict=True):
        term = g.op("Div", g.op("Sub", part, g.const(c)), g.const(s))
        total = term if total is None else g.op("Add", total, term)
    return total
