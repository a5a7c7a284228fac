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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from verifriend.bounds.frontends.common import append_traced
from verifriend.bounds.graph import Graph, Shape
from verifriend.bounds.ops import (
    AddNode,
    AffineNode,
    AvgPoolNode,
    Conv2dNode,
    FlattenNode,
    InputNode,
    LinearNode,
    MaxPoolNode,
    Node,
    ReLUNode,
    SigmoidNode,
    TanhNode,
)
from verifriend.errors import UnsupportedLayerError, UserError

# a general (non-row-vector) matrix product is expanded to a dense matrix up to this size
_MAX_DENSE = 50_000_000


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


SUPPORTED_OPS = (
    "Gemm, MatMul, Conv, BatchNormalization, Relu, Sigmoid, Tanh, Flatten, Reshape, Add, "
    "Sub, Mul, Div, Neg, AveragePool, GlobalAveragePool, MaxPool, Pad (zeros), Constant, "
    "Identity, Dropout, Transpose/Squeeze/Unsqueeze (layout-only), and ops on constants only"
)


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
    imp.vals[inputs[0].name] = _Value(0, onnx_shape)
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


@dataclass(frozen=True)
class _Value:
    """A non-constant ONNX value: the IR node holding it and its full ONNX shape."""

    node: int
    shape: Shape


class _Importer:
    def __init__(self, input_shape: Shape, consts: dict[str, np.ndarray], read: set[str]):
        self.nodes: list[Node] = [InputNode(inputs=(), shape=input_shape, name="input")]
        # traced sample values, so every node's output shape is checked by running it
        self.trace: list[Tensor] = [torch.rand(1, *input_shape, dtype=torch.float64)]
        self.consts = consts
        self.vals: dict[str, _Value] = {}
        self.flat_of: dict[int, int] = {}
        self.read = read  # names some node or the graph output reads

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
        op = _Op(self, node, name, attrs)
        if not any(isinstance(a, _Value) for a in args):
            results = _eval_constant(node, args, name)
            for o, r in zip(node.output, results):
                self.consts[o] = r
            return
        handler = _HANDLERS.get(node.op_type)
        if handler is None or node.domain not in ("", "ai.onnx"):
            raise UnsupportedLayerError(
                f"ONNX node '{name}' (op {node.op_type}) is not supported; "
                f"supported: {SUPPORTED_OPS}."
            )
        result = handler(op, args)
        used = [o for o in node.output[1:] if o in self.read]
        if used:  # e.g. MaxPool's indices or Dropout's mask
            raise op.unsupported(f"its extra output(s) {used} are not supported")
        if isinstance(result, np.ndarray):  # Shape/Size of a network value is a constant
            self.consts[node.output[0]] = result
        else:
            self.vals[node.output[0]] = result


class _Op:
    """One ONNX node being converted: its importer, proto, display name and attributes."""

    def __init__(self, imp: _Importer, node, name: str, attrs: dict):
        self.imp, self.node, self.name, self.attrs = imp, node, name, attrs

    def unsupported(self, detail: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(
            f"ONNX node '{self.name}' (op {self.node.op_type}) is not supported: {detail}."
        )

    def spatial(self, v: _Value) -> int:
        """The IR node of ``v`` as a (C, H, W) feature map (ONNX (1, C, H, W))."""
        node = self.imp.nodes[v.node]
        if len(v.shape) != 4 or v.shape[0] != 1:
            raise self.unsupported(f"only 2-d inputs of shape (1, C, H, W) work, got {v.shape}")
        if node.shape != v.shape[1:]:
            raise self.unsupported(
                f"its input of shape {v.shape} was flattened earlier (IR shape {node.shape}); "
                "reshapes that unflatten data are not supported"
            )
        return v.node


def _eval_constant(node, args, name: str) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants with ONNX's reference evaluator."""
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
        return list(ReferenceEvaluator(single).run(None, feeds))
    except Exception as err:  # noqa: BLE001 - the evaluator raises anything for a bad op
        raise UnsupportedLayerError(
            f"ONNX node '{name}' (op {node.op_type}) on constants could not be evaluated ({err})."
        ) from None


# ---------------------------------------------------------------- elementwise affine


def _affine(op: _Op, v: _Value, scale, shift, tag: str = "") -> _Value:
    """``v * scale + shift`` with constants broadcast against ``v``'s ONNX shape.

    Per-channel constants (in the IR layout of ``v``) give an ``AffineNode`` on ``v``
    as is; other constants flatten ``v`` first and act per element.
    """
    full = v.shape
    parts = []
    for c, default in ((scale, 1.0), (shift, 0.0)):
        c = np.asarray(default if c is None else c, dtype=np.float64)
        try:
            out_shape = np.broadcast_shapes(c.shape, full)
        except ValueError:
            raise op.unsupported(f"a constant of shape {c.shape} does not broadcast to "
                                 f"{full}") from None
        if out_shape != full:
            raise op.unsupported(f"a constant of shape {c.shape} would broadcast the "
                                 f"input {full} to {out_shape}")
        parts.append(torch.from_numpy(np.array(np.broadcast_to(c, full))))
    imp = op.imp
    src = v.node
    ir = imp.nodes[src].shape
    s, b = (p.reshape(ir[0], -1) for p in parts)
    if not (bool((s == s[:, :1]).all()) and bool((b == b[:, :1]).all())):
        src = imp.flat(src)
        s, b = (p.reshape(-1, 1) for p in parts)
    j = imp.add(AffineNode, (src,), op.name + tag, scale=s[:, 0].clone(), shift=b[:, 0].clone())
    return _Value(j, full)


def _const_operand(op: _Op, args) -> tuple[_Value, np.ndarray, bool]:
    """(value, constant, value_is_first) for a binary op with exactly one constant."""
    a, b = args
    if isinstance(a, _Value) and isinstance(b, _Value):
        raise op.unsupported("both operands are network values")  # callers handle Add/Sub
    return (a, b, True) if isinstance(a, _Value) else (b, a, False)


def _add(op: _Op, args) -> _Value:
    a, b = args
    if isinstance(a, _Value) and isinstance(b, _Value):
        return _add_values(op, a, b)
    v, c, _ = _const_operand(op, args)
    return _affine(op, v, None, c)


def _sub(op: _Op, args) -> _Value:
    a, b = args
    if isinstance(a, _Value) and isinstance(b, _Value):
        return _add_values(op, a, _affine(op, b, -1.0, None, "/neg"))
    v, c, first = _const_operand(op, args)
    c = np.asarray(c, dtype=np.float64)
    return _affine(op, v, None, -c) if first else _affine(op, v, -1.0, c)


def _mul(op: _Op, args) -> _Value:
    v, c, _ = _const_operand(op, args)
    return _affine(op, v, c, None)


def _div(op: _Op, args) -> _Value:
    v, c, first = _const_operand(op, args)
    if not first:
        raise op.unsupported("division by a network value is not linear")
    c = np.asarray(c, dtype=np.float64)
    if not np.all(c != 0):
        raise op.unsupported("division by zero")
    return _affine(op, v, 1.0 / c, None)


def _neg(op: _Op, args) -> _Value:
    return _affine(op, args[0], -1.0, None)


def _add_values(op: _Op, a: _Value, b: _Value) -> _Value:
    if a.shape != b.shape:
        raise op.unsupported(f"adding values of shapes {a.shape} and {b.shape} (broadcast)")
    imp = op.imp
    ia, ib = a.node, b.node
    if imp.nodes[ia].shape != imp.nodes[ib].shape:
        ia, ib = imp.flat(ia), imp.flat(ib)
    return _Value(imp.add(AddNode, (ia, ib), op.name), a.shape)


def _batchnorm(op: _Op, args) -> _Value:
    x, gamma, beta, mean, var = args[:5]
    if op.attrs.get("training_mode", 0):
        raise op.unsupported("training_mode=1")
    if any(isinstance(t, _Value) for t in (gamma, beta, mean, var)):
        raise op.unsupported("its parameters must be constants")
    eps = float(op.attrs.get("epsilon", 1e-5))
    gamma, beta, mean, var = (np.asarray(t, dtype=np.float64) for t in (gamma, beta, mean, var))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    view = (1, -1) + (1,) * (len(x.shape) - 2)
    return _affine(op, x, scale.reshape(view), shift.reshape(view))


# ---------------------------------------------------------------- matrix products


def _linear(op: _Op, v: _Value, fn: Callable[[Tensor], Tensor], row: Tensor | None,
            bias: Tensor | None, out_shape: Shape) -> _Value:
    """A ``LinearNode`` for the affine map ``fn`` of ``v``'s full ONNX tensor.

    ``row`` (out, in) is the weight when known directly (a row vector times a
    matrix); otherwise the matrix is read off ``fn`` applied to the unit basis.
    """
    imp = op.imp
    n, m = math.prod(v.shape), math.prod(out_shape)
    if row is None:
        if n * m > _MAX_DENSE:
            raise op.unsupported(f"a matrix product on shape {v.shape} is too large to expand")
        zero = torch.zeros(v.shape, dtype=torch.float64)
        offset = fn(zero).reshape(-1)
        basis = torch.eye(n, dtype=torch.float64).reshape(n, *v.shape)
        row = (torch.func.vmap(fn)(basis).reshape(n, m) - offset).T.contiguous()
        bias = offset
    bias = torch.zeros(m, dtype=torch.float64) if bias is None else bias.reshape(m)
    j = imp.add(LinearNode, (imp.flat(v.node),), op.name, weight=row, bias=bias.clone())
    return _Value(j, out_shape)


def _t(a) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _matmul(op: _Op, args) -> _Value:
    a, b = args
    if isinstance(a, _Value) and isinstance(b, _Value):
        raise op.unsupported("a product of two network values is not linear")
    if isinstance(a, _Value):
        v, w = a, _t(b)
        out_shape = tuple(np.matmul(np.zeros(v.shape), np.zeros(w.shape)).shape)
        row = w.T.contiguous() if w.dim() == 2 and math.prod(v.shape[:-1]) == 1 else None
        return _linear(op, v, lambda x: torch.matmul(x, w), row, None, out_shape)
    v, w = b, _t(a)
    out_shape = tuple(np.matmul(np.zeros(w.shape), np.zeros(v.shape)).shape)
    row = w if w.dim() == 2 and len(v.shape) == 1 else None
    return _linear(op, v, lambda x: torch.matmul(w, x), row, None, out_shape)


def _gemm(op: _Op, args) -> _Value:
    a, b = args[:2]
    c = args[2] if len(args) > 2 else None
    if sum(isinstance(t, _Value) for t in (a, b)) != 1 or isinstance(c, _Value):
        raise op.unsupported("exactly one of A and B must be a network value")
    alpha, beta = float(op.attrs.get("alpha", 1.0)), float(op.attrs.get("beta", 1.0))
    ta, tb = bool(op.attrs.get("transA", 0)), bool(op.attrs.get("transB", 0))
    v = a if isinstance(a, _Value) else b
    if len(v.shape) != 2:
        raise op.unsupported(f"Gemm needs 2-d operands, got {v.shape}")
    ca = None if isinstance(a, _Value) else _t(a)
    cb = None if isinstance(b, _Value) else _t(b)
    cc = None if c is None else _t(c) * beta

    def fn(x: Tensor) -> Tensor:
        A, B = (x if ca is None else ca), (x if cb is None else cb)
        y = alpha * ((A.T if ta else A) @ (B.T if tb else B))
        return y if cc is None else y + cc

    out_shape = tuple(fn(torch.zeros(v.shape, dtype=torch.float64)).shape)
    row = bias = None
    if ca is None and not ta and v.shape[0] == 1:  # the usual case: a row vector times B
        row = alpha * (cb if tb else cb.T)
        bias = None if cc is None else torch.broadcast_to(cc, out_shape).reshape(-1)
    return _linear(op, v, fn, row, bias, out_shape)


# ---------------------------------------------------------------- spatial ops


def _sym_pads(op: _Op, pads, k: int = 2) -> tuple[int, int]:
    pads = [int(p) for p in (pads or [0] * (2 * k))]
    if pads[:k] != pads[k:]:
        raise op.unsupported(f"asymmetric padding {pads}")
    return tuple(pads[:k])


def _auto_pads(op: _Op, kernel, stride, dilation, in_hw) -> tuple[int, int] | None:
    mode = op.attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", ""):
        return None
    if mode == "VALID":
        return (0, 0)
    pads = []
    for k, s, d, i in zip(kernel, stride, dilation, in_hw):
        out = -(-i // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - i)
        if total % 2:
            raise op.unsupported(f"auto_pad={mode} needs asymmetric padding")
        pads.append(total // 2)
    return tuple(pads)


def _conv(op: _Op, args) -> _Value:
    x, w = args[:2]
    bias = args[2] if len(args) > 2 else None
    if isinstance(w, _Value) or isinstance(bias, _Value):
        raise op.unsupported("its weights must be constants")
    src = op.spatial(x)
    w = _t(w)
    if w.dim() != 4:
        raise op.unsupported(f"only 2-d convolutions work, got a weight of shape {tuple(w.shape)}")
    groups = int(op.attrs.get("group", 1))
    if groups != 1:  # a grouped conv is a dense conv with a block-diagonal weight
        cout, cin_g = w.shape[:2]
        dense = w.new_zeros(cout, cin_g * groups, *w.shape[2:])
        per = cout // groups
        for g in range(groups):
            dense[g * per:(g + 1) * per, g * cin_g:(g + 1) * cin_g] = w[g * per:(g + 1) * per]
        w = dense
    stride = tuple(op.attrs.get("strides", (1, 1)))
    dilation = tuple(op.attrs.get("dilations", (1, 1)))
    kernel = tuple(w.shape[2:])
    padding = _auto_pads(op, kernel, stride, dilation, x.shape[2:]) or _sym_pads(
        op, op.attrs.get("pads"))
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else _t(bias)
    j = op.imp.add(Conv2dNode, (src,), op.name, weight=w, bias=b, stride=stride,
                   padding=padding, dilation=dilation, in_shape=op.imp.nodes[src].shape)
    return _Value(j, (1, *op.imp.nodes[j].shape))


def _pool_common(op: _Op, x: _Value):
    src = op.spatial(x)
    kernel = tuple(op.attrs["kernel_shape"])
    stride = tuple(op.attrs.get("strides", (1, 1)))
    dilation = tuple(op.attrs.get("dilations", (1, 1)))
    if len(kernel) != 2:
        raise op.unsupported(f"only 2-d pooling works, got kernel {kernel}")
    padding = _auto_pads(op, kernel, stride, dilation, x.shape[2:]) or _sym_pads(
        op, op.attrs.get("pads"))
    if op.attrs.get("ceil_mode", 0):
        floor = [(i + 2 * p - d * (k - 1) - 1) / s + 1
                 for i, p, d, k, s in zip(x.shape[2:], padding, dilation, kernel, stride)]
        if any(f != int(f) for f in floor):
            raise op.unsupported("ceil_mode=1 changes the output size here")
    return src, kernel, stride, padding, dilation


def _avgpool(op: _Op, args) -> _Value:
    src, kernel, stride, padding, dilation = _pool_common(op, args[0])
    if dilation != (1, 1):
        raise op.unsupported("dilated average pooling")
    if any(padding) and not op.attrs.get("count_include_pad", 0):
        raise op.unsupported("padding excluded from the average (count_include_pad=0)")
    j = op.imp.add(AvgPoolNode, (src,), op.name, kernel=kernel, stride=stride, padding=padding,
                   divisor=kernel[0] * kernel[1], in_shape=op.imp.nodes[src].shape)
    return _Value(j, (1, *op.imp.nodes[j].shape))


def _global_avgpool(op: _Op, args) -> _Value:
    src = op.spatial(args[0])
    hw = tuple(args[0].shape[2:])
    j = op.imp.add(AvgPoolNode, (src,), op.name, kernel=hw, stride=hw, padding=(0, 0),
                   divisor=hw[0] * hw[1], in_shape=op.imp.nodes[src].shape)
    return _Value(j, (1, *op.imp.nodes[j].shape))


def _maxpool(op: _Op, args) -> _Value:
    src, kernel, stride, padding, dilation = _pool_common(op, args[0])
    j = op.imp.add(MaxPoolNode, (src,), op.name, kernel=kernel, stride=stride, padding=padding,
                   dilation=dilation, in_shape=op.imp.nodes[src].shape)
    return _Value(j, (1, *op.imp.nodes[j].shape))


def _pad(op: _Op, args) -> _Value:
    x = args[0]
    pads = op.attrs.get("pads") if len(args) < 2 or args[1] is None else args[1]
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    mode = op.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = op.attrs.get("value", 0.0) if len(args) < 3 or args[2] is None else args[2]
    if len(args) > 3 and args[3] is not None:
        raise op.unsupported("the axes input")
    if not any(pads):
        return x
    if mode != "constant" or float(np.asarray(value).reshape(-1)[0]) != 0.0:
        raise op.unsupported(f"only zero padding works, got mode '{mode}'")
    r = len(x.shape)
    if r != 4 or any(pads[k] or pads[k + r] for k in range(2)):
        raise op.unsupported("only spatial padding of (1, C, H, W) values works")
    padding = _sym_pads(op, [pads[2], pads[3], pads[6], pads[7]])
    src = op.spatial(x)
    c = x.shape[1]
    # zero padding is a 1x1 identity convolution with padding: exact and bound-friendly
    eye = torch.eye(c, dtype=torch.float64).reshape(c, c, 1, 1)
    j = op.imp.add(Conv2dNode, (src,), op.name, weight=eye, bias=torch.zeros(c, dtype=eye.dtype),
                   stride=(1, 1), padding=padding, dilation=(1, 1),
                   in_shape=op.imp.nodes[src].shape)
    return _Value(j, (1, *op.imp.nodes[j].shape))


# ---------------------------------------------------------------- elementwise and layout


def _unary(kind: type[Node]):
    def convert(op: _Op, args) -> _Value:
        v = args[0]
        return _Value(op.imp.add(kind, (v.node,), op.name), v.shape)

    return convert


def _identity(op: _Op, args) -> _Value:
    return args[0]


def _relayout(v: _Value, shape) -> _Value:
    return _Value(v.node, tuple(int(d) for d in shape))


def _flatten(op: _Op, args) -> _Value:
    v = args[0]
    axis = int(op.attrs.get("axis", 1))
    axis = axis + len(v.shape) if axis < 0 else axis
    return _relayout(v, (math.prod(v.shape[:axis]), math.prod(v.shape[axis:])))


def _reshape(op: _Op, args) -> _Value:
    v, target = args[0], args[1] if len(args) > 1 else op.attrs.get("shape")
    if isinstance(target, _Value):
        raise op.unsupported("the target shape must be a constant")
    target = [int(d) for d in np.asarray(target).reshape(-1)]
    if not op.attrs.get("allowzero", 0):
        target = [v.shape[k] if d == 0 else d for k, d in enumerate(target)]
    n = math.prod(v.shape)
    if target.count(-1) == 1:
        rest = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = n // rest if rest else 0
    if math.prod(target) != n or any(d < 0 for d in target):
        raise op.unsupported(f"cannot reshape {v.shape} to {target}")
    return _relayout(v, target)


def _axes(op: _Op, args, rank: int) -> list[int]:
    axes = args[1] if len(args) > 1 and args[1] is not None else op.attrs.get("axes")
    if isinstance(axes, _Value):
        raise op.unsupported("the axes must be constants")
    return None if axes is None else [int(a) % rank for a in np.asarray(axes).reshape(-1)]


def _squeeze(op: _Op, args) -> _Value:
    v = args[0]
    axes = _axes(op, args, len(v.shape))
    if axes is None:
        axes = [k for k, d in enumerate(v.shape) if d == 1]
    if any(v.shape[a] != 1 for a in axes):
        raise op.unsupported(f"squeezing a dim that is not 1 in {v.shape}")
    return _relayout(v, [d for k, d in enumerate(v.shape) if k not in axes])


def _unsqueeze(op: _Op, args) -> _Value:
    v = args[0]
    raw = args[1] if len(args) > 1 and args[1] is not None else op.attrs.get("axes")
    rank = len(v.shape) + np.asarray(raw).size
    shape = list(v.shape)
    for a in sorted(_axes(op, args, rank)):
        shape.insert(a, 1)
    return _relayout(v, shape)


def _shape(op: _Op, args) -> np.ndarray:
    shape = np.asarray(args[0].shape, dtype=np.int64)
    start, end = op.attrs.get("start", 0), op.attrs.get("end", None)
    return shape[start:end]


def _size(op: _Op, args) -> np.ndarray:
    return np.asarray(math.prod(args[0].shape), dtype=np.int64)


def _transpose(op: _Op, args) -> _Value:
    v = args[0]
    perm = list(op.attrs.get("perm", range(len(v.shape) - 1, -1, -1)))
    moved = [p for p in perm if v.shape[p] != 1]
    if moved != sorted(moved):
        raise op.unsupported(f"a transpose {perm} of shape {v.shape} reorders data")
    return _relayout(v, [v.shape[p] for p in perm])


_HANDLERS: dict[str, Callable[[_Op, list], _Value | np.ndarray]] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "Relu": _unary(ReLUNode),
    "Sigmoid": _unary(SigmoidNode),
    "Tanh": _unary(TanhNode),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": _transpose,
    "Add": _add,
    "Sub": _sub,
    "Mul": _mul,
    "Div": _div,
    "Neg": _neg,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "MaxPool": _maxpool,
    "Pad": _pad,
    "Identity": _identity,
    "Dropout": _identity,
    "Shape": _shape,
    "Size": _size,
}


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

