"""2-d convolution (groups = 1), and the adjoint (transposed) map that back-substitution
and average pooling share."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.ops.base import (
    BackwardResult,
    Interval,
    MilpStep,
    Node,
    Pair,
    PatchStep,
    Shape,
    Window,
    bias_term,
    center_radius,
    patch_mask,
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

    def difference(self, pre: Interval | None) -> Conv2dNode:
        return replace(self, bias=torch.zeros_like(self.bias))

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        return (conv_transpose(A, self.weight, self, self.dilation),), bias_term(A, self.bias)

    patchable: ClassVar[bool] = True
    grows_window: ClassVar[bool] = True

    def patch_window(self, win: Window) -> Window:
        kh, kw = self.weight.shape[2:]
        return Window(
            tuple((K - 1) * s + d * (k - 1) + 1
                  for K, s, d, k in zip(win.kernel, self.stride, self.dilation, (kh, kw))),
            tuple(S * s for S, s in zip(win.stride, self.stride)),
            tuple(P * s + p for P, s, p in zip(win.padding, self.stride, self.padding)),
        )

    def backward_patches(self, P: Tensor, step: PatchStep) -> tuple[Tensor, Tensor | None]:
        bias = P.sum((-2, -1)) @ self.bias
        P = _conv_back_patches(self, P)
        if not step.input_zero_off_map:
            # ReLU slopes and input boxes read as 0 off the map, which zeroes such
            # positions by itself; other inputs need the mask
            P = P * patch_mask(step.shape, step.window, step.loc, P).unsqueeze(2)
        return P, bias

    def milp(self, step: MilpStep) -> None:
        M, b = dense_map(self, self.in_shape)
        affine_rows(step.rows, step.out, step.src[0], M, b)

    def conv_kernel(self) -> tuple[Tensor, Tensor, Pair, Pair] | None:
        return (self.weight, self.bias, self.stride, self.padding) \
            if tuple(self.dilation) == (1, 1) else None


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


def _adjoint_matrix(P: Tensor, node: Conv2dNode) -> Tensor:
    """The adjoint written out as one matrix: fast for small patches."""
    N, C, kh, kw = P.shape
    eye = torch.eye(C * kh * kw, dtype=P.dtype, device=P.device).view(-1, C, kh, kw)
    M = F.conv_transpose2d(eye, node.weight, stride=node.stride, dilation=node.dilation)
    return (P.reshape(N, -1) @ M.flatten(1)).view(N, *M.shape[1:])


def _adjoint_transposed(P: Tensor, node: Conv2dNode) -> Tensor:
    return F.conv_transpose2d(P, node.weight, stride=node.stride, dilation=node.dilation)


def _adjoint_fold(P: Tensor, node: Conv2dNode) -> Tensor:
    k = node.weight.shape[2:]
    out = [
        (K - 1) * s + d * (kk - 1) + 1
        for K, s, d, kk in zip(P.shape[2:], node.stride, node.dilation, k)
    ]
    return conv_adjoint_fold(P, node.weight, out, node.stride, 0, node.dilation)


def _pick_adjoint(P: Tensor, node: Conv2dNode):
    """The fastest of three equivalent adjoint implementations on CPU, by shape.

    Measured on conv_big-like layers: strided transposed convolutions are slow on
    CPU, so small strided ones go through the matrix; few input channels favour
    the GEMM + col2im form; the rest is a plain transposed convolution (also on
    GPUs, where cuDNN handles all cases). A fixed rule, not timing, keeps results
    reproducible from run to run.
    """
    if P.device.type != "cpu":
        return _adjoint_transposed
    k = node.weight.shape[2:]
    out = [
        (K - 1) * s + d * (kk - 1) + 1
        for K, s, d, kk in zip(P.shape[2:], node.stride, node.dilation, k)
    ]
    growth = (out[0] * out[1]) / (k[0] * k[1])  # matrix MACs / convolution MACs
    if growth <= (4 if max(node.stride) > 1 else 1):
        return _adjoint_matrix
    if node.weight.shape[1] <= 3:
        return _adjoint_fold
    return _adjoint_transposed


def _conv_back_patches(node: Conv2dNode, P: Tensor) -> Tensor:
    """Patches (..., C, kh, kw) on a conv's output -> patches on its input (the adjoint, unpadded)."""
    lead = P.shape[:-3]
    flat = P.reshape(-1, *P.shape[-3:])
    out = _pick_adjoint(flat, node)(flat, node)
    return out.view(*lead, *out.shape[1:])
