"""Pooling: average pooling (a fixed linear map) and max pooling (its own relaxation and a
big-M selection per window in the MILP)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.ops.add import AddNode
from verifriend.bounds.ops.affine import AffineNode
from verifriend.bounds.ops.base import BackwardResult, Interval, MilpStep, Node, Pair, Shape
from verifriend.bounds.ops.conv import Conv2dNode, conv_transpose
from verifriend.bounds.ops.milp_rows import INF, affine_rows, dense_map
from verifriend.bounds.ops.relu import ReLUNode
from verifriend.errors import UnsupportedLayerError


@dataclass(eq=False, kw_only=True)
class AvgPoolNode(Node):
    """Average pooling with zero padding counted in the divisor (a fixed linear map)."""

    kernel: Pair
    stride: Pair
    padding: Pair
    divisor: int  # kh * kw unless the layer overrides it
    in_shape: Shape

    mixing: ClassVar[bool] = True
    linear: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding,
                            divisor_override=self.divisor)

    def interval(self, x: Interval) -> Interval:
        return self.forward(x[0]), self.forward(x[1])  # positive weights: monotone

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        ch = self.shape[0]
        weight = A.new_full((ch, 1, *self.kernel), 1.0 / self.divisor)
        return (conv_transpose(A, weight, self, (1, 1), groups=ch),), None

    def milp(self, step: MilpStep) -> None:
        M, b = dense_map(self, self.in_shape)
        affine_rows(step.rows, step.out, step.src[0], M, b)


@dataclass(eq=False, kw_only=True)
class MaxPoolNode(Node):
    """Max pooling; padded positions behave as -inf. ``extra`` pads the bottom and the right
    further (asymmetric padding, ceil-mode pooling)."""

    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    in_shape: Shape
    extra: Pair = (0, 0)

    relaxed: ClassVar[bool] = True
    relax_all: ClassVar[bool] = True
    mixing: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        if self.extra == (0, 0):
            return F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation)
        return F.max_pool2d(_pad(self, x, float("-inf")), self.kernel, self.stride, 0,
                            self.dilation)

    def interval(self, x: Interval) -> Interval:
        return self.forward(x[0]), self.forward(x[1])

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        return _backward_maxpool(self, A, ins)

    def relu_form(self, first: int) -> list[Node]:
        """The pool as a tree of ``max(t, r) = r + relu(t - r)`` (GROCKET, Sec. III-B3):
        one-hot selection convolutions (stride of the pool) pick each window position, then
        pairs are merged level by level. Unpadded, undilated pools only (a padded position
        would be -inf)."""
        if self.padding != (0, 0) or self.dilation != (1, 1) or self.extra != (0, 0):
            raise UnsupportedLayerError(
                f"max pool '{self.name}' is padded or dilated; only plain max pools can be "
                "written as ReLUs for global robustness.")
        nodes: list[Node] = []

        def add(node: Node) -> int:
            nodes.append(node)
            return first + len(nodes) - 1

        C, (kh, kw), shape = self.in_shape[0], self.kernel, self.shape
        w0 = torch.empty(0)  # float32: the caller moves the nodes to the graph's dtype
        level = []
        for i in range(kh):
            for j in range(kw):
                w = w0.new_zeros(C, C, kh, kw)
                w[torch.arange(C), torch.arange(C), i, j] = 1.0
                level.append(add(Conv2dNode(
                    inputs=self.inputs, shape=shape, name=f"{self.name}.pick{i}{j}", weight=w,
                    bias=w.new_zeros(C), stride=self.stride, padding=(0, 0), dilation=(1, 1),
                    in_shape=self.in_shape)))
        one = w0.new_ones(C)
        while len(level) > 1:
            merged = []
            for a, b in zip(level[::2], level[1::2]):  # max(a, b) = b + relu(a - b)
                neg = add(AffineNode(inputs=(b,), shape=shape, name=f"{self.name}.neg",
                                     scale=-one, shift=0 * one))
                diff = add(AddNode(inputs=(a, neg), shape=shape, name=f"{self.name}.diff"))
                r = add(ReLUNode(inputs=(diff,), shape=shape, name=f"{self.name}.relu"))
                merged.append(add(AddNode(inputs=(b, r), shape=shape, name=f"{self.name}.max")))
            level = merged + level[len(merged) * 2:]
        return nodes

    def milp(self, step: MilpStep) -> None:
        l, u = step.in_bounds[0]
        _maxpool_rows(step.rows, self, step.out, step.src[0], l, u, step.rel, step.relax)


def _pad(node: MaxPoolNode, x: Tensor, value: float) -> Tensor:
    """``x`` with the node's (possibly asymmetric) padding filled with ``value``."""
    (ph, pw), (eh, ew) = node.padding, node.extra
    return F.pad(x, (pw, pw + ew, ph, ph + eh), value=value)


def _windows(node: MaxPoolNode, x: Tensor) -> Tensor:
    """Pooling windows of ``x`` (B, C, H, W) as (B, C, K, L), padding filled with -inf."""
    x = _pad(node, x, float("-inf"))
    cols = F.unfold(x, node.kernel, dilation=node.dilation, stride=node.stride)
    return cols.view(x.shape[0], x.shape[1], -1, cols.shape[-1])


def _backward_maxpool(node: MaxPoolNode, A: Tensor, ins) -> BackwardResult:
    """Sound relaxation of ``y = max_i x_i`` over each window.

    Let ``j`` be the input with the largest lower bound. Always ``y >= x_j``. If
    ``l_j >= u_i`` for every other ``i`` the max is ``x_j`` exactly, so ``y <= x_j``;
    otherwise ``y <= max_i u_i`` (a constant). Padding never wins (-inf).
    """
    lower, upper = ins[0]
    lw, uw = _windows(node, lower), _windows(node, upper)
    lmax, j = lw.max(2, keepdim=True)  # (B, C, 1, L)
    others = uw.scatter(2, j, float("-inf")).amax(2)
    exact = (lmax.squeeze(2) >= others).to(A.dtype)  # (B, C, L)
    umax = uw.amax(2)

    Ba, S, C = A.shape[:3]
    a = A.reshape(Ba, S, C, -1)  # (Ba, S, C, L)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    coef = pos + neg * exact.unsqueeze(1)
    # the constant upper bound only enters where the window is not exact
    bias = (neg * ((1 - exact) * umax).unsqueeze(1)).flatten(2).sum(-1)

    B, K, L = lw.shape[0], lw.shape[2], lw.shape[3]
    idx = j.unsqueeze(1).expand(B, S, C, 1, L)
    cols = coef.new_zeros(coef.shape[0], S, C, K, L).scatter(3, idx, coef.unsqueeze(3))
    (ph, pw), (eh, ew) = node.padding, node.extra
    H, W = node.in_shape[1:]
    folded = F.fold(cols.view(-1, C * K, L), (H + 2 * ph + eh, W + 2 * pw + ew), node.kernel,
                    dilation=node.dilation, stride=node.stride)
    folded = folded[..., ph:ph + H, pw:pw + W]  # drop what landed on the padding
    return (folded.reshape(-1, S, *node.in_shape),), bias


def _window_index(node: MaxPoolNode) -> np.ndarray:
    """(n_out, kh*kw) flat input index of each output's window; -1 marks padding."""
    C = node.in_shape[0]
    idx = torch.arange(1, math.prod(node.in_shape) + 1, dtype=torch.float64)
    padded = _pad(node, idx.view(1, *node.in_shape), 0.0)
    cols = F.unfold(padded, node.kernel, node.dilation, 0, node.stride)  # (1, C*kh*kw, L)
    K = cols.shape[1] // C
    cols = cols.view(C, K, -1).transpose(1, 2).reshape(-1, K)  # output (c, l) -> window
    return cols.numpy().astype(np.int64) - 1


def _maxpool_rows(rows, node, y, z, l, u, rel, relax) -> None:
    """``y = max`` of each window: ``y >= z_i`` for all i, and one binary per input
    that can be the maximum (``u_i >= max_j l_j``) selects which one ``y`` equals:
    ``y <= z_i + (max_j u_j - l_i)(1 - a_i)``, ``sum a_i = 1``."""
    win = _window_index(node)
    valid = win >= 0
    w = np.where(valid, win, 0)
    lo = np.where(valid, l[w] - rel * (1 + np.abs(l[w])), -np.inf)
    up = np.where(valid, u[w] + rel * (1 + np.abs(u[w])), -np.inf)
    o, i = np.nonzero(valid)
    k = o.size
    rows.rows(
        np.zeros(k),
        np.full(k, INF),
        (np.arange(k), y[o], np.ones(k)),
        (np.arange(k), z[w[o, i]], -np.ones(k)),
    )  # y >= z_i
    cand = valid & (up >= lo.max(1, keepdims=True))
    single = cand.sum(1) == 1
    o1 = np.nonzero(single)[0]
    if o1.size:  # the maximum is known: y = z_i
        i1 = cand[o1].argmax(1)
        r = np.arange(o1.size)
        rows.rows(
            np.zeros(o1.size),
            np.zeros(o1.size),
            (r, y[o1], np.ones(o1.size)),
            (r, z[w[o1, i1]], -np.ones(o1.size)),
        )
    o, i = np.nonzero(cand & ~single[:, None])
    if not o.size:
        return
    a = rows.cols(np.zeros(o.size), np.ones(o.size))
    if not relax:
        rows.binaries.append(a)
    big = up.max(1)[o] - lo[o, i]
    r = np.arange(o.size)
    rows.rows(
        np.full(o.size, -INF),
        big,
        (r, y[o], np.ones(o.size)),
        (r, z[w[o, i]], -np.ones(o.size)),
        (r, a, big),
    )  # y <= z_i + big (1 - a_i)
    groups, g = np.unique(o, return_inverse=True)
    rows.rows(np.ones(groups.size), np.ones(groups.size), (g.ravel(), a, np.ones(o.size)))
