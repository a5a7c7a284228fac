"""ONNX frontend, the op converters: one function per ONNX op type, listed in
:data:`HANDLERS` (see :mod:`verifriend.bounds.frontends.onnx` for the layout rules).

A converter takes the :class:`Op` being converted and its arguments (a :class:`Value` for
a network value, a numpy array for a constant) and returns the :class:`Value` of its
output (or a constant for ``Shape``/``Size``). One-input elementwise kinds that register an
ONNX op type themselves (:data:`verifriend.bounds.ops.ONNX_OPS`) need no converter here:
:func:`elementwise` serves them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifriend.bounds.graph import Shape
from verifriend.bounds.ops import (
    ONNX_OPS,
    AddNode,
    AffineNode,
    LinearNode,
    Node,
    PermuteNode,
)
from verifriend.errors import UnsupportedLayerError

# a general (non-row-vector) matrix product is expanded to a dense matrix up to this size
_MAX_DENSE = 50_000_000


@dataclass(frozen=True)
class Value:
    """A non-constant ONNX value: the IR node holding it and its full ONNX shape."""

    node: int
    shape: Shape


class Op:
    """One ONNX node being converted: its importer, proto, display name and attributes."""

    def __init__(self, imp, node, name: str, attrs: dict):  # imp: onnx._Importer
        self.imp, self.node, self.name, self.attrs = imp, node, name, attrs

    def unsupported(self, detail: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(
            f"ONNX node '{self.name}' (op {self.node.op_type}) is not supported: {detail}."
        )

    def spatial(self, v: Value) -> int:
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


# ---------------------------------------------------------------- elementwise affine


def _affine(op: Op, v: Value, scale, shift, tag: str = "") -> Value:
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
    return Value(j, full)


def _const_operand(op: Op, args) -> tuple[Value, np.ndarray, bool]:
    """(value, constant, value_is_first) for a binary op with exactly one constant."""
    a, b = args
    if isinstance(a, Value) and isinstance(b, Value):
        raise op.unsupported("both operands are network values")  # callers handle Add/Sub
    return (a, b, True) if isinstance(a, Value) else (b, a, False)


def _add(op: Op, args) -> Value:
    a, b = args
    if isinstance(a, Value) and isinstance(b, Value):
        return _add_values(op, a, b)
    v, c, _ = _const_operand(op, args)
    return _affine(op, v, None, c)


def _sub(op: Op, args) -> Value:
    a, b = args
    if isinstance(a, Value) and isinstance(b, Value):
        return _add_values(op, a, _affine(op, b, -1.0, None, "/neg"))
    v, c, first = _const_operand(op, args)
    c = np.asarray(c, dtype=np.float64)
    return _affine(op, v, None, -c) if first else _affine(op, v, -1.0, c)


def _mul(op: Op, args) -> Value:
    v, c, _ = _const_operand(op, args)
    return _affine(op, v, c, None)


def _div(op: Op, args) -> Value:
    v, c, first = _const_operand(op, args)
    if not first:
        raise op.unsupported("division by a network value is not linear")
    c = np.asarray(c, dtype=np.float64)
    if not np.all(c != 0):
        raise op.unsupported("division by zero")
    return _affine(op, v, 1.0 / c, None)


def _neg(op: Op, args) -> Value:
    return _affine(op, args[0], -1.0, None)


def _add_values(op: Op, a: Value, b: Value) -> Value:
    if a.shape != b.shape:
        raise op.unsupported(f"adding values of shapes {a.shape} and {b.shape} (broadcast)")
    imp = op.imp
    ia, ib = a.node, b.node
    if imp.nodes[ia].shape != imp.nodes[ib].shape:
        ia, ib = imp.flat(ia), imp.flat(ib)
    return Value(imp.add(AddNode, (ia, ib), op.name), a.shape)


def _batchnorm(op: Op, args) -> Value:
    x, gamma, beta, mean, var = args[:5]
    if op.attrs.get("training_mode", 0):
        raise op.unsupported("training_mode=1")
    if any(isinstance(t, Value) for t in (gamma, beta, mean, var)):
        raise op.unsupported("its parameters must be constants")
    eps = float(op.attrs.get("epsilon", 1e-5))
    gamma, beta, mean, var = (np.asarray(t, dtype=np.float64) for t in (gamma, beta, mean, var))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    view = (1, -1) + (1,) * (len(x.shape) - 2)
    return _affine(op, x, scale.reshape(view), shift.reshape(view))


# ---------------------------------------------------------------- matrix products


def _linear(op: Op, v: Value, fn: Callable[[Tensor], Tensor], row: Tensor | None,
            bias: Tensor | None, out_shape: Shape) -> Value:
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
    return Value(j, out_shape)


def f64(a) -> Tensor:
    """A constant as a contiguous float64 tensor."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _matmul(op: Op, args) -> Value:
    a, b = args
    if isinstance(a, Value) and isinstance(b, Value):
        raise op.unsupported("a product of two network values is not linear")
    if isinstance(a, Value):
        v, w = a, f64(b)
        out_shape = tuple(np.matmul(np.zeros(v.shape), np.zeros(w.shape)).shape)
        row = w.T.contiguous() if w.dim() == 2 and math.prod(v.shape[:-1]) == 1 else None
        return _linear(op, v, lambda x: torch.matmul(x, w), row, None, out_shape)
    v, w = b, f64(a)
    out_shape = tuple(np.matmul(np.zeros(w.shape), np.zeros(v.shape)).shape)
    row = w if w.dim() == 2 and len(v.shape) == 1 else None
    return _linear(op, v, lambda x: torch.matmul(w, x), row, None, out_shape)


def _gemm(op: Op, args) -> Value:
    a, b = args[:2]
    c = args[2] if len(args) > 2 else None
    if sum(isinstance(t, Value) for t in (a, b)) != 1 or isinstance(c, Value):
        raise op.unsupported("exactly one of A and B must be a network value")
    alpha, beta = float(op.attrs.get("alpha", 1.0)), float(op.attrs.get("beta", 1.0))
    ta, tb = bool(op.attrs.get("transA", 0)), bool(op.attrs.get("transB", 0))
    v = a if isinstance(a, Value) else b
    if len(v.shape) != 2:
        raise op.unsupported(f"Gemm needs 2-d operands, got {v.shape}")
    ca = None if isinstance(a, Value) else f64(a)
    cb = None if isinstance(b, Value) else f64(b)
    cc = None if c is None else f64(c) * beta

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


# ---------------------------------------------------------------- elementwise and layout


def elementwise(kind: type[Node]):
    """The converter of a one-input elementwise kind registered under an ONNX op type
    (:data:`verifriend.bounds.ops.ONNX_OPS`): its other inputs must be constants."""

    def convert(op: Op, args) -> Value:
        v, rest = args[0], args[1:]
        if any(isinstance(a, Value) for a in rest):
            raise op.unsupported("only its first input may be a network value")
        try:
            params = kind.params_from_onnx(op.attrs, rest)
        except ValueError as err:
            raise op.unsupported(str(err).rstrip(".")) from None
        return Value(op.imp.add(kind, (v.node,), op.name, **params), v.shape)

    return convert


def _identity(op: Op, args) -> Value:
    return args[0]


def _relayout(v: Value, shape) -> Value:
    return Value(v.node, tuple(int(d) for d in shape))


def _flatten(op: Op, args) -> Value:
    v = args[0]
    axis = int(op.attrs.get("axis", 1))
    axis = axis + len(v.shape) if axis < 0 else axis
    return _relayout(v, (math.prod(v.shape[:axis]), math.prod(v.shape[axis:])))


def _reshape(op: Op, args) -> Value:
    v, target = args[0], args[1] if len(args) > 1 else op.attrs.get("shape")
    if isinstance(target, Value):
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


def _axes(op: Op, args, rank: int) -> list[int]:
    axes = args[1] if len(args) > 1 and args[1] is not None else op.attrs.get("axes")
    if isinstance(axes, Value):
        raise op.unsupported("the axes must be constants")
    return None if axes is None else [int(a) % rank for a in np.asarray(axes).reshape(-1)]


def _squeeze(op: Op, args) -> Value:
    v = args[0]
    axes = _axes(op, args, len(v.shape))
    if axes is None:
        axes = [k for k, d in enumerate(v.shape) if d == 1]
    if any(v.shape[a] != 1 for a in axes):
        raise op.unsupported(f"squeezing a dim that is not 1 in {v.shape}")
    return _relayout(v, [d for k, d in enumerate(v.shape) if k not in axes])


def _unsqueeze(op: Op, args) -> Value:
    v = args[0]
    raw = args[1] if len(args) > 1 and args[1] is not None else op.attrs.get("axes")
    rank = len(v.shape) + np.asarray(raw).size
    shape = list(v.shape)
    for a in sorted(_axes(op, args, rank)):
        shape.insert(a, 1)
    return _relayout(v, shape)


def _shape(op: Op, args) -> np.ndarray:
    shape = np.asarray(args[0].shape, dtype=np.int64)
    start, end = op.attrs.get("start", 0), op.attrs.get("end", None)
    return shape[start:end]


def _size(op: Op, args) -> np.ndarray:
    return np.asarray(math.prod(args[0].shape), dtype=np.int64)


def _transpose(op: Op, args) -> Value:
    """Layout-only when just size-1 axes move; otherwise a :class:`PermuteNode` of the
    sample's axes (e.g. the leading NHWC -> NCHW transpose of Keras exports)."""
    v = args[0]
    perm = [int(p) for p in op.attrs.get("perm", range(len(v.shape) - 1, -1, -1))]
    out_shape = [v.shape[p] for p in perm]
    moved = [p for p in perm if v.shape[p] != 1]
    if moved == sorted(moved):
        return _relayout(v, out_shape)
    if perm[0] != 0 or v.shape[0] != 1 or op.imp.nodes[v.node].shape != v.shape[1:]:
        raise op.unsupported(f"a transpose {perm} of shape {v.shape} moves the batch axis or "
                             "data flattened earlier")
    j = op.imp.add(PermuteNode, (v.node,), op.name, dims=tuple(p - 1 for p in perm[1:]))
    return Value(j, tuple(out_shape))


def _clip(op: Op, args) -> Value:
    """``min(max(x, lo), hi)`` as ReLUs, so bounds, branching and the MILP treat it exactly
    like the ReLUs it is made of: ``hi - relu(hi - lo - relu(x - lo))`` (one side only:
    ``lo + relu(x - lo)`` or ``hi - relu(hi - x)``)."""
    v = args[0]
    ends = []
    for k, key, default in ((1, "min", -np.inf), (2, "max", np.inf)):
        c = args[k] if len(args) > k and args[k] is not None else op.attrs.get(key, default)
        if isinstance(c, Value) or np.asarray(c).size != 1:
            raise op.unsupported(f"its {key} must be a scalar constant")
        ends.append(float(np.asarray(c).reshape(-1)[0]))
    lo, hi = ends
    if lo > hi:
        raise op.unsupported(f"min {lo} > max {hi}")
    relu = ONNX_OPS["Relu"]

    def relu_of(w: Value, tag: str) -> Value:
        return Value(op.imp.add(relu, (w.node,), op.name + tag), w.shape)

    if np.isinf(lo) and np.isinf(hi):
        return v
    if np.isinf(hi):
        return _affine(op, relu_of(_affine(op, v, None, -lo, "/shift"), "/relu"), None, lo)
    if np.isinf(lo):
        flip = relu_of(_affine(op, v, -1.0, hi, "/flip"), "/relu")
        return _affine(op, flip, -1.0, hi)
    inner = relu_of(_affine(op, v, None, -lo, "/shift"), "/relu_lo")
    outer = relu_of(_affine(op, inner, -1.0, hi - lo, "/flip"), "/relu_hi")
    return _affine(op, outer, -1.0, hi)


HANDLERS: dict[str, Callable[[Op, list], Value | np.ndarray]] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batchnorm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": _transpose,
    "Clip": _clip,
    "Add": _add,
    "Sub": _sub,
    "Mul": _mul,
    "Div": _div,
    "Neg": _neg,
    "Identity": _identity,
    "Dropout": _identity,
    "Shape": _shape,
    "Size": _size,
}
