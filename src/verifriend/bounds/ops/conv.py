"""2-d convolution (groups = 1), and the adjoint (transposed) map that back-substitution
and average pooling share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.ops.base import (
    BackwardResult,
    Interval,
    MilpStep,
    Node,
    Pair,
    Shape,
    bias_term,
    center_radius,
)
from verifriend.bounds.ops.milp_rows import affine_rows, dense_map


@dataclass(eq=False, kw_only=True)
class Conv2dNode(Node):
    weight: Tensor = field(repr=False)  # (out_ch, in_ch, kh, kw)
    bias: Tensor = field(repr=False)  # (out_ch,)
    stride: Pair
    padding: Pair
    dilation: Pair
    in_shape: Shape

    mixing: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def interval(self, x: Interval) -> Interval:
        c, r = center_radius(*x)
        mid = F.conv2d(c, self.weight, self.bias, self.stride, self.padding, self.dilation)
        rad = F.conv2d(r, self.weight.abs(), None, self.stride, self.padding, self.dilation)
        return mid - rad, mid + rad

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        return (conv_transpose(A, self.weight, self, self.dilation),), bias_term(A, self.bias)

    def milp(self, step: MilpStep) -> None:
        M, b = dense_map(self, self.in_shape)
        affine_rows(step.rows, step.out, step.src[0], M, b)


def conv_adjoint_fold(A: Tensor, weight: Tensor, out_hw, stride, padding, dilation) -> Tensor:
    """Adjoint of a conv as a GEMM with the kernel then col2im: ``A`` (N, C_out, h, w)
    -> (N, C_in, *out_hw). On CPU much faster than a transposed convolution when
    the input has few channels (the first layer)."""
    N, C = A.shape[:2]
    cols = weight.reshape(C, -1).t() @ A.reshape(N, C, -1)
    k = weight.shape[2:]
    return F.fold(cols, tuple(out_hw), k, dilation=dilation, padding=padding, stride=stride)


def conv_transpose(A: Tensor, weight: Tensor, node, dilation, groups: int = 1) -> Tensor:
    """Adjoint of a strided conv: maps ``A`` on the output back onto the input shape."""
    Ba, S = A.shape[:2]
    in_hw, out_hw = node.in_shape[1:], node.shape[1:]
    flat = A.reshape(Ba * S, *node.shape)
    if groups == 1 and weight.shape[1] <= 3 and A.device.type == "cpu":
        x = conv_adjoint_fold(flat, weight, in_hw, node.stride, node.padding, dilation)
        return x.view(Ba, S, *node.in_shape)
    # the sizes a transposed conv produces by default can fall short of the
    # input when the forward conv dropped trailing rows; output_padding restores them
    out_pad = tuple(
        i - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for i, o, s, p, d, k in zip(
            in_hw, out_hw, node.stride, node.padding, dilation, weight.shape[2:]
        )
    )
    x = F.conv_transpose2d(flat, weight, stride=node.stride, padding=node.padding,
                           output_padding=out_pad, groups=groups, dilation=dilation)
    return x.view(Ba, S, *node.in_shape)
