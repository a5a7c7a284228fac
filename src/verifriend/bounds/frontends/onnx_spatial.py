"""ONNX frontend, the spatial op converters: Conv, pooling and Pad on ``(1, C, H, W)``
values (see :mod:`verifriend.bounds.frontends.onnx_ops` for the converter protocol)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from verifriend.bounds.frontends.onnx_ops import Op, Value, f64
from verifriend.bounds.ops import AvgPoolNode, Conv2dNode, MaxPoolNode


def _sym_pads(op: Op, pads, k: int = 2) -> tuple[int, int]:
    pads = [int(p) for p in (pads or [0] * (2 * k))]
    if pads[:k] != pads[k:]:
        raise op.unsupported(f"asymmetric padding {pads}")
    return tuple(pads[:k])


def _auto_pads(op: Op, kernel, stride, dilation, in_hw) -> tuple[int, int] | None:
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
    padding = _auto_pads(op, kernel, stride, dilation, x.shape[2:]) or _sym_pads(
        op, op.attrs.get("pads"))
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
    padding = _auto_pads(op, kernel, stride, dilation, x.shape[2:]) or _sym_pads(
        op, op.attrs.get("pads"))
    if op.attrs.get("ceil_mode", 0):
        floor = [(i + 2 * p - d * (k - 1) - 1) / s + 1
                 for i, p, d, k, s in zip(x.shape[2:], padding, dilation, kernel, stride)]
        if any(f != int(f) for f in floor):
            raise op.unsupported("ceil_mode=1 changes the output size here")
    return src, kernel, stride, padding, dilation


def _avgpool(op: Op, args) -> Value:
    src, kernel, stride, padding, dilation = _pool_common(op, args[0])
    if dilation != (1, 1):
        raise op.unsupported("dilated average pooling")
    if any(padding) and not op.attrs.get("count_include_pad", 0):
        raise op.unsupported("padding excluded from the average (count_include_pad=0)")
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
    src, kernel, stride, padding, dilation = _pool_common(op, args[0])
    j = op.imp.add(MaxPoolNode, (src,), op.name, kernel=kernel, stride=stride, padding=padding,
                   dilation=dilation, in_shape=op.imp.nodes[src].shape)
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
    padding = _sym_pads(op, [pads[2], pads[3], pads[6], pads[7]])
    src = op.spatial(x)
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
