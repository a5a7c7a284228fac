"""ONNX frontend, the spatial op converters: Conv, pooling and Pad on ``(1, C, H, W)``
values (see :mod:`verifriend.bounds.frontends.onnx_ops` for the converter protocol).

Padding may be asymmetric (TensorFlow's "same" puts the odd row at the bottom): a zero
:class:`~verifriend.bounds.ops.PadNode` in front of a conv or an average pool, the max pool's
own ``extra`` padding, which also serves ``ceil_mode=1``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from verifriend.bounds.frontends.onnx_ops import Op, Value, f64
from verifriend.bounds.ops import AvgPoolNode, Conv2dNode, MaxPoolNode, PadNode


def _pads(op: Op, kernel, stride, dilation, in_hw) -> list[int]:
    """ONNX pads ``[top, left, bottom, right]`` from ``auto_pad`` or the ``pads`` attribute."""
    mode = op.attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", ""):
        pads = [int(p) for p in (op.attrs.get("pads") or [0] * 4)]
        if len(pads) != 4:
            raise op.unsupported(f"padding {pads} of a 2-d op")
        return pads
    if mode == "VALID":
        return [0] * 4
    begin, end = [], []
    for k, s, d, i in zip(kernel, stride, dilation, in_hw):
        out = -(-i // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - i)
        small, big = total // 2, total - total // 2
        begin.append(big if mode == "SAME_LOWER" else small)
        end.append(small if mode == "SAME_LOWER" else big)
    return begin + end


def _padded(op: Op, src: int, pads: list[int]) -> tuple[int, tuple[int, int]]:
    """``(node, symmetric padding)`` for an op reading ``src``: asymmetric padding becomes a
    zero :class:`PadNode` in front and no padding on the op itself."""
    t, left, b, r = pads
    if (t, left) == (b, r):
        return src, (t, left)
    j = op.imp.add(PadNode, (src,), op.name + "/pad", pads=(t, b, left, r))
    return j, (0, 0)


def _ceil_extra(op: Op, in_hw, pads, kernel, stride, dilation) -> tuple[int, int]:
    """How much further ``ceil_mode=1`` pads the bottom and the right: the last window may
    run past the input, but must start inside the input or its leading padding."""
    if not op.attrs.get("ceil_mode", 0):
        return (0, 0)
    extra = []
    for i, pb, pe, k, s, d in zip(in_hw, pads[:2], pads[2:], kernel, stride, dilation):
        out = -(-(i + pb + pe - d * (k - 1) - 1) // s) + 1
        if (out - 1) * s >= i + pb:
            out -= 1
        extra.append(max(0, (out - 1) * s + d * (k - 1) + 1 - (i + pb + pe)))
    return tuple(extra)


def _conv(op: Op, args) -> Value:
    x, w = args[:2]
    bias = args[2] if len(args) > 2 else None
    if isinstance(w, Value) or isinstance(bias, Value):
        raise op.unsupported("its weights must be constants")
    src = op.spatial(x)
    w = f64(w)
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
    src, padding = _padded(op, src, _pads(op, kernel, stride, dilation, x.shape[2:]))
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else f64(bias)
    j = op.imp.add(Conv2dNode, (src,), op.name, weight=w, bias=b, stride=stride,
                   padding=padding, dilation=dilation, in_shape=op.imp.nodes[src].shape)
    return Value(j, (1, *op.imp.nodes[j].shape))


def _pool_common(op: Op, x: Value):
    src = op.spatial(x)
    kernel = tuple(op.attrs["kernel_shape"])
    stride = tuple(op.attrs.get("strides", (1, 1)))
    dilation = tuple(op.attrs.get("dilations", (1, 1)))
    if len(kernel) != 2:
        raise op.unsupported(f"only 2-d pooling works, got kernel {kernel}")
    pads = _pads(op, kernel, stride, dilation, x.shape[2:])
    extra = _ceil_extra(op, x.shape[2:], pads, kernel, stride, dilation)
    return src, kernel, stride, pads, extra, dilation


def _avgpool(op: Op, args) -> Value:
    src, kernel, stride, pads, extra, dilation = _pool_common(op, args[0])
    if dilation != (1, 1):
        raise op.unsupported("dilated average pooling")
    if any(pads) and not op.attrs.get("count_include_pad", 0):
        raise op.unsupported("padding excluded from the average (count_include_pad=0)")
    if any(extra):
        raise op.unsupported("ceil_mode=1 changes the output size of average pooling here "
                             "(its border windows have their own divisors)")
    src, padding = _padded(op, src, pads)
    j = op.imp.add(AvgPoolNode, (src,), op.name, kernel=kernel, stride=stride, padding=padding,
                   divisor=kernel[0] * kernel[1], in_shape=op.imp.nodes[src].shape)
    return Value(j, (1, *op.imp.nodes[j].shape))


def _global_avgpool(op: Op, args) -> Value:
    src = op.spatial(args[0])
    hw = tuple(args[0].shape[2:])
    j = op.imp.add(AvgPoolNode, (src,), op.name, kernel=hw, stride=hw, padding=(0, 0),
                   divisor=hw[0] * hw[1], in_shape=op.imp.nodes[src].shape)
    return Value(j, (1, *op.imp.nodes[j].shape))


def _maxpool(op: Op, args) -> Value:
    src, kernel, stride, (t, left, b, r), (eh, ew), dilation = _pool_common(op, args[0])
    if t > b or left > r:
        raise op.unsupported(f"padding {[t, left, b, r]} larger at the top or left than at "
                             "the bottom or right")
    j = op.imp.add(MaxPoolNode, (src,), op.name, kernel=kernel, stride=stride, padding=(t, left),
                   extra=(b - t + eh, r - left + ew), dilation=dilation,
                   in_shape=op.imp.nodes[src].shape)
    return Value(j, (1, *op.imp.nodes[j].shape))


def _pad(op: Op, args) -> Value:
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
    src, padding = _padded(op, op.spatial(x), [pads[2], pads[3], pads[6], pads[7]])
    if src != x.node:  # asymmetric: the PadNode is all
        return Value(src, (1, *op.imp.nodes[src].shape))
    c = x.shape[1]
    # zero padding is a 1x1 identity convolution with padding: exact and bound-friendly
    eye = torch.eye(c, dtype=torch.float64).reshape(c, c, 1, 1)
    j = op.imp.add(Conv2dNode, (src,), op.name, weight=eye, bias=torch.zeros(c, dtype=eye.dtype),
                   stride=(1, 1), padding=padding, dilation=(1, 1),
                   in_shape=op.imp.nodes[src].shape)
    return Value(j, (1, *op.imp.nodes[j].shape))


HANDLERS: dict[str, Callable[[Op, list], Value]] = {
    "Conv": _conv,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "MaxPool": _maxpool,
    "Pad": _pad,
}
