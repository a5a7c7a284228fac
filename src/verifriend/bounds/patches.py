"""Patch-mode back-substitution for intermediate bounds of convolutional layers.

The linear coefficients of one conv neuron on an earlier layer are nonzero only
inside its receptive field. When the path from a node back to the input is a
plain chain of Conv2d / Affine / ReLU nodes, each row's coefficients are stored
as a window ("patch") of shape (C, Kh, Kw) around its location instead of the
whole feature map: far fewer elements than dense identity rows. Windows share
one geometry per node: the row at location (h, w) of the start node covers rows
``h * stride - padding ... + kernel`` of that node (likewise for columns).
Positions outside a feature map are kept at zero (they are conv zero-padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.graph import AffineNode, Conv2dNode, Graph, InputNode, ReLUNode
from verifriend.bounds.relax import Interval, relu_relaxation

Pair = tuple[int, int]


@dataclass(frozen=True)
class Window:
    """Where the patch of a start-node location lies on one node's feature map."""

    kernel: Pair
    stride: Pair
    padding: Pair


def conv_chain(graph: Graph, start: int) -> list[int] | None:
    """Nodes from ``start`` back to the input if they form a plain chain of
    Conv2d/Affine/ReLU nodes over 3-d feature maps with at least one conv; else None."""
    chain, j = [], start
    while not isinstance(graph.nodes[j], InputNode):
        node = graph.nodes[j]
        if not isinstance(node, (Conv2dNode, AffineNode, ReLUNode)) or len(node.shape) != 3:
            return None
        chain.append(j)
        j = node.inputs[0]
    if len(graph.input_shape) != 3 or not any(
        isinstance(graph.nodes[i], Conv2dNode) for i in chain
    ):
        return None
    return chain + [0]


def chain_windows(graph: Graph, chain: list[int]) -> dict[int, Window]:
    """Window geometry on the output of every chain node (``chain[0]`` has 1x1 windows)."""
    win = Window((1, 1), (1, 1), (0, 0))
    windows = {chain[0]: win}
    for j, i in pairwise(chain):
        node = graph.nodes[j]
        if isinstance(node, Conv2dNode):
            kh, kw = node.weight.shape[2:]
            win = Window(
                tuple(
                    (K - 1) * s + d * (k - 1) + 1
                    for K, s, d, k in zip(win.kernel, node.stride, node.dilation, (kh, kw))
                ),
                tuple(S * s for S, s in zip(win.stride, node.stride)),
                tuple(P * s + p for P, s, p in zip(win.padding, node.stride, node.padding)),
            )
        windows[i] = win
    return windows


def patch_widths(graph: Graph, windows: dict[int, Window]) -> tuple[int, int]:
    """(total patch elements, total dense elements) per row over the chain: a cost estimate."""
    patch = sum(graph.nodes[i].shape[0] * w.kernel[0] * w.kernel[1] for i, w in windows.items())
    dense = sum(math.prod(graph.nodes[i].shape) for i in windows)
    return patch, dense


def max_patch_width(graph: Graph, windows: dict[int, Window]) -> int:
    return max(graph.nodes[i].shape[0] * w.kernel[0] * w.kernel[1] for i, w in windows.items())


def _rows_of(x: Tensor, win: Window, loc: Tensor) -> Tensor:
    """Windows of ``x`` (Bx, C, H, W) at locations ``loc`` (Bl, S) -> (B, S, C, Kh, Kw)."""
    C = x.shape[1]
    cols = F.unfold(x, win.kernel, padding=win.padding, stride=win.stride)  # (Bx, C*K, L)
    cols = cols.transpose(1, 2)  # (Bx, L, C*K)
    if loc.shape[0] == 1:
        rows = cols[:, loc[0]]
    else:
        cols = cols.expand(loc.shape[0], -1, -1)
        rows = cols.gather(1, loc.unsqueeze(-1).expand(-1, -1, cols.shape[-1]))
    return rows.view(rows.shape[0], rows.shape[1], C, *win.kernel)


def _mask(shape, win: Window, loc: Tensor, like: Tensor) -> Tensor:
    """1 where a window position lies inside a feature map of ``shape``, else 0."""
    ones = like.new_ones(1, 1, *shape[1:])
    return _rows_of(ones, win, loc)


def _select(t: Tensor, select: Tensor) -> Tensor:
    return (
        t[0][select]
        if t.shape[0] == 1
        else t.gather(
            1, select.view(*select.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
        )
    )


def _conv_back(node: Conv2dNode, P: Tensor) -> Tensor:
    """Patches on a conv's output -> patches on its input (the adjoint, unpadded)."""
    Ba, S, C, kh, kw = P.shape
    in_ch, k = node.weight.shape[1], node.weight.shape[2:]
    out_hw = [
        (K - 1) * s + d * (kk - 1) + 1
        for K, s, d, kk in zip((kh, kw), node.stride, node.dilation, k)
    ]
    if C * kh * kw * in_ch * out_hw[0] * out_hw[1] <= _MATRIX_LIMIT:
        # small patches: one GEMM with the adjoint written out as a matrix is much
        # faster than many tiny transposed convolutions
        eye = torch.eye(C * kh * kw, dtype=P.dtype, device=P.device).view(-1, C, kh, kw)
        M = F.conv_transpose2d(eye, node.weight, stride=node.stride, dilation=node.dilation)
        return (P.reshape(Ba, S, -1) @ M.flatten(1)).view(Ba, S, *M.shape[1:])
    out = F.conv_transpose2d(
        P.reshape(Ba * S, C, kh, kw), node.weight, stride=node.stride, dilation=node.dilation
    )
    return out.view(Ba, S, *out.shape[1:])


_MATRIX_LIMIT = 1 << 22


def backsubstitute_patches(
    graph: Graph,
    chain: list[int],
    windows: dict[int, Window],
    channel: Tensor,
    sign: Tensor,
    loc: Tensor,
    intervals: list[Interval],
    select: Tensor | None = None,
    lower_slopes: dict[int, Tensor] | None = None,
) -> Tensor:
    """Lower bounds (B, S') of rows ``sign * e_(channel, loc)`` of node ``chain[0]``.

    ``channel``, ``sign``, ``loc`` are (S,) and describe S shared rows; ``select``
    (B, S') picks each sample's rows as in ``relax.backsubstitute``.
    ``lower_slopes[j]`` (B, S', C, Kh, Kw), patch-shaped like the coefficients at
    ReLU node ``j``, overrides the lower slopes of its unstable neurons (alpha-CROWN).
    """
    start = graph.nodes[chain[0]]
    S = channel.numel()
    P = sign.new_zeros(1, S, start.shape[0], 1, 1)
    P[0, torch.arange(S, device=P.device), channel] = sign.view(S, 1, 1)
    loc = loc.view(1, S)
    bias = None

    def add(term):
        nonlocal bias
        bias = term if bias is None else bias + term

    for j, i in pairwise(chain):
        node = graph.nodes[j]
        if isinstance(node, Conv2dNode):
            add(P.sum((3, 4)) @ node.bias)
            P = _conv_back(node, P)
            if not isinstance(graph.nodes[i], (ReLUNode, InputNode)):
                # ReLU slopes and input boxes read as 0 off the map, which zeroes
                # such positions by itself; other nodes need the mask
                P = P * _mask(graph.nodes[i].shape, windows[i], loc, P)
        elif isinstance(node, AffineNode):
            add(P.sum((3, 4)) @ node.shift)
            P = P * node.scale.view(1, 1, -1, 1, 1)
        else:  # ReLU: the relaxation depends on the sample
            if select is not None and P.shape[0] == 1:
                P, loc = _select(P, select), _select(loc, select)
                bias = None if bias is None else _select(bias, select)
                S, select = P.shape[1], None
            lower, upper = intervals[i]
            lo, up, icpt = relu_relaxation(lower, upper)
            alpha = lower_slopes.get(j) if lower_slopes else None
            if alpha is None:
                # one gather of the three slope maps at every row's window
                maps = _rows_of(torch.cat([lo, up - lo, icpt], 1), windows[i], loc)
                lo, diff, icpt = maps.unflatten(2, (3, -1)).unbind(2)
            else:
                unstable = ((lower < 0) & (upper > 0)).to(lower.dtype)
                maps = _rows_of(torch.cat([lo, up, icpt, unstable], 1), windows[i], loc)
                lo, up, icpt, unstable = maps.unflatten(2, (4, -1)).unbind(2)
                lo = torch.where(unstable > 0, alpha.clamp(0.0, 1.0), lo)
                diff = up - lo
            neg = P.clamp(max=0)
            add(torch.einsum("bschw,bschw->bs", neg, icpt))
            P = torch.addcmul(P * lo, neg, diff)

    # concretize at the input box
    x_lower, x_upper = intervals[0]
    c, r = (x_lower + x_upper) / 2, (x_upper - x_lower) / 2
    c, r = _rows_of(c, windows[0], loc), _rows_of(r, windows[0], loc)
    add((P * c).flatten(2).sum(-1) - (P.abs() * r).flatten(2).sum(-1))
    if select is not None:
        bias = _select(bias, select)
    return bias
