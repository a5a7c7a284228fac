"""ONNX frontend: import an ONNX file into the graph IR.

The ONNX graph describes one input tensor; its leading dim of 1 (or a symbolic
batch dim) is dropped to form the IR sample, and the IR adds its own batch dim.
Every ONNX value keeps its full ONNX shape (batch dim = 1) next to the IR node
that holds its data. Because the IR node's data, flattened in C order, always
equals the ONNX value flattened in C order, layout-only ops (Reshape, Flatten,
Squeeze, Unsqueeze, Transpose of size-1 axes) only change the recorded ONNX
shape and emit no node. A node is inserted only where an op needs a different IR
layout: a ``FlattenNode`` before a matrix product, and an error where a spatial
op (Conv, pooling) would need a flattened value unflattened.

Elementwise ops with constants (Sub/Div normalization, BatchNormalization,
Add/Mul by a constant) become ``AffineNode`` s; a final pass folds each affine
node into the Linear / Conv / Affine node before it when nothing else reads
that one, so ``MatMul`` + ``Add`` is one ``LinearNode`` and the input
normalization is one ``AffineNode``. Sub-graphs that only compute constants
(``Shape`` -> ``Gather`` -> ``Concat`` -> ``Reshape`` patterns) are evaluated
with ONNX's reference evaluator. Folding is done in float64; the graph is cast to
the requested dtype at the end.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from verifriend.bounds.frontends import onnx_ops, onnx_spatial
from verifriend.bounds.frontends.common import append_traced
from verifriend.bounds.frontends.onnx_ops import Op, Value, elementwise
from verifriend.bounds.graph import Graph, Shape
from verifriend.bounds.ops import (
    ONNX_OPS,
    AffineNode,
    Conv2dNode,
    FlattenNode,
    InputNode,
    LinearNode,
    Node,
)
from verifriend.errors import UnsupportedLayerError, UserError


@dataclass(eq=False, repr=False)  # keep Graph's readable repr
class OnnxGraph(Graph):
    """A ``Graph`` imported from ONNX, with the ONNX input/output names and shapes.

    The ONNX input, flattened in C order (the order of VNN-LIB's ``X_i``), equals the
    IR input flattened; likewise the output and VNN-LIB's ``Y_i``.
    """

    onnx_input_shape: Shape = ()
    onnx_output_shape: Shape = ()
    input_name: str = ""
    output_name: str = ""

    def input_from_flat(self, x: Tensor) -> Tensor:
        """``(B, n)`` inputs in ONNX (VNN-LIB) flat order -> ``(B, *input_shape)``."""
        n = math.prod(self.input_shape)
        if x.dim() != 2 or x.shape[1] != n:
            raise UserError(
                f"flat inputs must have shape (B, {n}) for this network, got {tuple(x.shape)}."
            )
        return x.reshape(x.shape[0], *self.input_shape)

    def to(self, device=None, dtype: torch.dtype | None = None) -> OnnxGraph:
        g = super().to(device, dtype)
        return dataclasses.replace(self, nodes=g.nodes)


HANDLERS = {**onnx_ops.HANDLERS, **onnx_spatial.HANDLERS}


def supported_ops() -> str:
    """The ONNX op types the importer converts, for messages."""
    names = sorted(set(HANDLERS) | set(ONNX_OPS))
    return (", ".join(names) + "; Pad only with zeros, Transpose/Squeeze/Unsqueeze as "
            "layout changes, Constant and any op on constants only")


def load_onnx(path, *, dtype: torch.dtype = torch.float32) -> OnnxGraph:
    """Import the ONNX model at ``path`` (one input, one output) as an :class:`OnnxGraph`.

    Raises ``UnsupportedLayerError`` naming the node and op for anything the IR
    cannot express, and ``UserError`` for unreadable or malformed files.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file {path} does not exist.")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf decode errors have many types
        raise UserError(f"{path} is not a readable ONNX model ({err}).") from None
    return import_model(model, dtype=dtype)


def import_model(model, *, dtype: torch.dtype = torch.float32) -> OnnxGraph:
    """Import an in-memory ``onnx.ModelProto``; see :func:`load_onnx`."""
    from onnx import numpy_helper

    g = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise UserError(
            f"ONNX model must have exactly one input and one output, got {len(inputs)} "
            f"and {len(g.output)}."
        )
    onnx_shape = _input_shape(inputs[0])
    ir_shape = onnx_shape[1:] if len(onnx_shape) >= 2 and onnx_shape[0] == 1 else onnx_shape
    ir_shape = ir_shape or (1,)
    read = {i for n in g.node for i in n.input} | {g.output[0].name}
    imp = _Importer(ir_shape, consts, read)
    imp.opsets = {o.domain or "": o.version for o in model.opset_import}
    imp.vals[inputs[0].name] = Value(0, onnx_shape)
    for node in g.node:
        imp.convert(node)
    out_name = g.output[0].name
    if out_name not in imp.vals:
        raise UserError(f"the ONNX output '{out_name}' does not depend on the input.")
    out = imp.vals[out_name]
    nodes, out_idx = _prune_and_fuse(imp.nodes, out.node)
    if out_idx == 0:  # the network is the identity: keep a real output node
        ch = ir_shape[0]
        one = torch.ones(ch, dtype=torch.float64)
        nodes.append(AffineNode(inputs=(0,), shape=ir_shape, name="identity", scale=one,
                                shift=one * 0))
    graph = OnnxGraph(nodes, ir_shape, onnx_shape, out.shape, inputs[0].name, out_name)
    return graph.to(dtype=dtype)


def _input_shape(value_info) -> Shape:
    dims = value_info.type.tensor_type.shape.dim
    shape = []
    for k, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(int(d.dim_value))
        elif k == 0:  # a symbolic batch dim: the IR batches itself
            shape.append(1)
        else:
            raise UserError(
                f"ONNX input '{value_info.name}' has a symbolic dimension {k} "
                f"('{d.dim_param}'); only the batch dimension may be symbolic."
            )
    return tuple(shape)


class _Importer:
    def __init__(self, input_shape: Shape, consts: dict[str, np.ndarray], read: set[str]):
        self.nodes: list[Node] = [InputNode(inputs=(), shape=input_shape, name="input")]
        # traced sample values, so every node's output shape is checked by running it
        self.trace: list[Tensor] = [torch.rand(1, *input_shape, dtype=torch.float64)]
        self.consts = consts
        self.vals: dict[str, Value] = {}
        self.flat_of: dict[int, int] = {}
        self.read = read  # names some node or the graph output reads
        self.opsets: dict[str, int] = {}  # the file's opset per domain (constants follow it)

    # ---- plumbing

    def add(self, kind: type[Node], inputs: tuple[int, ...], name: str, **params) -> int:
        return append_traced(self.nodes, self.trace, f"ONNX node '{name}'", kind, inputs, name,
                             **params)

    def flat(self, j: int) -> int:
        """An IR node holding node ``j``'s data as a flat vector (reused when asked again)."""
        if len(self.nodes[j].shape) == 1:
            return j
        if j not in self.flat_of:
            self.flat_of[j] = self.add(FlattenNode, (j,), self.nodes[j].name + "/flatten",
                                       in_shape=self.nodes[j].shape)
        return self.flat_of[j]

    def convert(self, node) -> None:
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        name = node.name or f"<{node.op_type} -> {node.output[0]}>"
        args = [None if not i else self.consts.get(i, self.vals.get(i)) for i in node.input]
        for i, a in zip(node.input, args):
            if i and a is None:
                raise UserError(f"ONNX node '{name}' reads '{i}', which is never defined.")
        op = Op(self, node, name, attrs)
        if not any(isinstance(a, Value) for a in args):
            results = _eval_constant(node, args, name, self.opsets)
            for o, r in zip(node.output, results):
                self.consts[o] = r
            return
        handler = HANDLERS.get(node.op_type)
        if handler is None and node.op_type in ONNX_OPS:
            handler = elementwise(ONNX_OPS[node.op_type])
        if handler is None or node.domain not in ("", "ai.onnx"):
            raise UnsupportedLayerError(
                f"ONNX node '{name}' (op {node.op_type}) is not supported; "
                f"supported: {supported_ops()}."
            )
        result = handler(op, args)
        used = [o for o in node.output[1:] if o in self.read]
        if used:  # e.g. MaxPool's indices or Dropout's mask
            raise op.unsupported(f"its extra output(s) {used} are not supported")
        if isinstance(result, np.ndarray):  # Shape/Size of a network value is a constant
            self.consts[node.output[0]] = result
        else:
            self.vals[node.output[0]] = result


def _eval_constant(node, args, name: str, opsets: dict[str, int] | None = None) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants with ONNX's reference evaluator, under
    the file's ``opsets`` (an op's inputs and attributes change between opsets: Unsqueeze's
    axes is an attribute up to opset 12, an input from 13)."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Constant":
        value = next(iter(helper.get_attribute_value(a) for a in node.attribute))
        if hasattr(value, "dims"):
            return [numpy_helper.to_array(value)]
        return [np.asarray(value, dtype=np.float32 if isinstance(value, float) or (
            isinstance(value, list) and value and isinstance(value[0], float)) else np.int64)]
    names = [f"in{k}" if a is not None else "" for k, a in enumerate(args)]
    outs = [f"out{k}" for k in range(len(node.output))]
    single = helper.make_node(node.op_type, names, outs, domain=node.domain)
    single.attribute.extend(node.attribute)
    feeds = {n: a for n, a in zip(names, args) if n}
    try:
        if opsets:
            g = helper.make_graph([single], "constant",
                                  [helper.make_tensor_value_info(n, 0, None) for n in feeds],
                                  [helper.make_tensor_value_info(n, 0, None) for n in outs])
            model = helper.make_model(g, opset_imports=[
                helper.make_opsetid(d, v) for d, v in opsets.items()])
            return list(ReferenceEvaluator(model).run(None, feeds))
        return list(ReferenceEvaluator(single).run(None, feeds))
    except Exception as err:  # noqa: BLE001 - the evaluator raises anything for a bad op
        raise UnsupportedLayerError(
            f"ONNX node '{name}' (op {node.op_type}) on constants could not be evaluated ({err})."
        ) from None


# ---------------------------------------------------------------- clean-up pass


def _compose(prev: Node, aff: AffineNode) -> Node:
    """``prev`` followed by the per-channel affine map ``aff``, as one node of prev's kind."""
    s, b = aff.scale, aff.shift
    if isinstance(prev, AffineNode):
        return dataclasses.replace(prev, scale=prev.scale * s, shift=prev.shift * s + b,
                                   name=f"{prev.name}+{aff.name}")
    view = (-1,) + (1,) * (prev.weight.dim() - 1)
    return dataclasses.replace(prev, weight=prev.weight * s.view(view), bias=prev.bias * s + b,
                               name=f"{prev.name}+{aff.name}")


def _prune_and_fuse(nodes: list[Node], out: int) -> tuple[list[Node], int]:
    """Drop nodes the output does not depend on and fold affine nodes into their source."""
    live = {out}
    for k in range(out, -1, -1):
        if k in live:
            live.update(nodes[k].inputs)
    readers = Counter(i for k in live for i in nodes[k].inputs)
    new: list[Node] = []
    where: dict[int, int] = {}
    for k in sorted(live):
        node = dataclasses.replace(nodes[k], inputs=tuple(where[i] for i in nodes[k].inputs))
        if isinstance(node, AffineNode):
            j = nodes[k].inputs[0]
            prev = new[where[j]]
            if j != 0 and readers[j] == 1 and isinstance(prev, (AffineNode, LinearNode,
                                                                 Conv2dNode)):
                new[where[j]] = _compose(prev, node)
                where[k] = where[j]
                continue
        where[k] = len(new)
        new.append(node)
    return new, where[out]

