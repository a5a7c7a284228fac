"""Patch-mode back-substitution for intermediate bounds of convolutional layers.

The linear coefficients of one conv neuron on an earlier layer are nonzero only
inside its receptive field. When the path from a node back to the input is a
plain chain of Conv2d / Affine / ReLU nodes, each row's coefficients are stored
as a window ("patch") of shape (C, Kh, Kw) around its location instead of the
whole feature map: far fewer elements than dense identity rows. Windows share
one geometry per node: the row at location (h, w) of the start node covers rows
``h * stride - padding ... + kernel`` of that node (likewise for columns).
Positions outside a feature map are kept at zero (they are conv zero-padding).

The patch representation follows auto_LiRPA's (Xu, Shi, Zhang, Wang, Huang, Chang, Kailkhura,
Lin, Hsieh, "Automatic Perturbation Analysis for Scalable Certified Robustness and Beyond",
NeurIPS 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.bounds.ops import AffineNode, Conv2dNode, InputNode, Interval, ReLUNode
from verifriend.bounds.ops.conv import conv_adjoint_fold
from verifriend.bounds.ops.relu import relu_relaxation

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


def patch_geometry(graph: Graph, t: int) -> tuple[list[int], dict[int, Window]] | None:
    """(chain, windows) when node ``t``'s identity rows are cheaper as patches, else None."""
    chain = conv_chain(graph, t)
    if chain is None:
        return None
    windows = chain_windows(graph, chain)
    patch, dense = patch_widths(graph, windows)
    return (chain, windows) if patch < dense else None


def max_patch_width(graph: Graph, windows: dict[int, Window]) -> int:
    return max(graph.nodes[i].shape[0] * w.kernel[0] * w.kernel[1] for i, w in windows.items())


@dataclass(frozen=True)
class RowGroups:
    """Identity rows of a conv node, grouped by spatial location.

    Location ``loc[l]`` carries the neurons ``channel[l, :]`` (distinct channels,
    wanted ones first; ``valid`` is False on padding). Each neuron gives two rows,
    ``+e`` (its lower bound) and ``-e`` (minus its upper bound): a sweep returns
    ``(B, L, 2R)`` with the ``+`` rows first. Rows at one location share the
    windows of every slope map, so those are unfolded once per location, not per row.
    """

    loc: Tensor  # (L,)
    channel: Tensor  # (L, R)
    valid: Tensor  # (L, R)

    def neurons(self, hw: int) -> Tensor:
        """Flat neuron index (L * R,) of every grouped neuron (padding included)."""
        return (self.channel * hw + self.loc.unsqueeze(1)).flatten()

    def split(self, size: int) -> list[RowGroups]:
        """The groups in chunks of at most ``size`` locations."""
        return [
            RowGroups(*parts)
            for parts in zip(self.loc.split(size), self.channel.split(size), self.valid.split(size))
        ]


def group_rows(wanted: Tensor, shape) -> RowGroups:
    """Group the neurons ``wanted`` (flat bool over a ``(C, H, W)`` node) by location."""
    by_loc = wanted.view(shape[0], -1)  # (C, HW)
    count = by_loc.sum(0)
    loc = count.nonzero().squeeze(1)
    R = int(count.max()) if loc.numel() else 0
    order = torch.argsort((~by_loc[:, loc]).to(torch.uint8), dim=0, stable=True)[:R]
    valid = torch.arange(R, device=wanted.device).unsqueeze(1) < count[loc]
    return RowGroups(loc, order.t().contiguous(), valid.t().contiguous())


def sweep_rows(result: Tensor) -> Tensor:
    """``(B, L, 2R)`` sweep output -> ``(B, 2 L R)``: the lower-bound rows of every grouped
    neuron in ``RowGroups.neurons`` order, then the negated upper-bound rows."""
    R = result.shape[-1] // 2
    return torch.cat([result[..., :R].flatten(1), result[..., R:].flatten(1)], 1)


def window_rows(x: Tensor, win: Window, loc: Tensor) -> Tensor:
    """Windows of ``x`` (Bx, C, H, W) at locations ``loc`` (L,) -> (Bx, L, C, Kh, Kw)."""
    C = x.shape[1]
    cols = F.unfold(x, win.kernel, padding=win.padding, stride=win.stride)  # (Bx, C*K, L)
    rows = cols.transpose(1, 2)[:, loc]
    return rows.reshape(rows.shape[0], rows.shape[1], C, *win.kernel)


def _mask(shape, win: Window, loc: Tensor, like: Tensor) -> Tensor:
    """1 where a window position lies inside a feature map of ``shape``, else 0."""
    ones = like.new_ones(1, 1, *shape[1:])
    return window_rows(ones, win, loc)


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


def _conv_back(node: Conv2dNode, P: Tensor) -> Tensor:
    """Patches (..., C, kh, kw) on a conv's output -> patches on its input (the adjoint, unpadded)."""
    lead = P.shape[:-3]
    flat = P.reshape(-1, *P.shape[-3:])
    out = _pick_adjoint(flat, node)(flat, node)
    return out.view(*lead, *out.shape[1:])


def backsubstitute_patches(
    graph: Graph,
    chain: list[int],
    windows: dict[int, Window],
    groups: RowGroups,
    intervals: list[Interval],
    lower_slopes: dict[int, Tensor] | None = None,
) -> Tensor:
    """Lower bounds (B, L, 2R) of the grouped identity rows of node ``chain[0]``.

    ``lower_slopes[j]`` (B, L, 2R, C, Kh, Kw), patch-shaped like the coefficients at
    ReLU node ``j``, overrides the lower slopes of its unstable neurons (alpha-CROWN).
    Coefficients stay batch-free until the first ReLU.
    """
    start = graph.nodes[chain[0]]
    loc = groups.loc
    L, R = groups.channel.shape
    P = intervals[0][0].new_zeros(1, L, 2 * R, start.shape[0], 1, 1)
    ch = (
        groups.channel.unsqueeze(0).expand(2, -1, -1).permute(1, 0, 2).reshape(1, L, 2 * R, 1, 1, 1)
    )
    sign = torch.ones(2, R, dtype=P.dtype, device=P.device)
    sign[1] = -1
    P.scatter_(3, ch, sign.view(1, 1, 2 * R, 1, 1, 1).expand(1, L, -1, -1, -1, -1))
    bias = None

    def add(term):
        nonlocal bias
        bias = term if bias is None else bias + term

    for j, i in pairwise(chain):
        node = graph.nodes[j]
        if isinstance(node, Conv2dNode):
            add(P.sum((-2, -1)) @ node.bias)
            P = _conv_back(node, P)
            if not isinstance(graph.nodes[i], (ReLUNode, InputNode)):
                # ReLU slopes and input boxes read as 0 off the map, which zeroes
                # such positions by itself; other nodes need the mask
                P = P * _mask(graph.nodes[i].shape, windows[i], loc, P).unsqueeze(2)
        elif isinstance(node, AffineNode):
            add(P.sum((-2, -1)) @ node.shift)
            P = P * node.scale.view(-1, 1, 1)
        else:  # ReLU: the relaxation depends on the sample
            lower, upper = intervals[i]
            lo, up, icpt = relu_relaxation(lower, upper)
            alpha = lower_slopes.get(j) if lower_slopes else None
            if alpha is None:
                # one unfold of the three slope maps, shared by a location's rows
                maps = window_rows(torch.cat([lo, up - lo, icpt], 1), windows[i], loc)
                lo, diff, icpt = maps.unsqueeze(2).unflatten(3, (3, -1)).unbind(3)
            else:
                unstable = ((lower < 0) & (upper > 0)).to(lower.dtype)
                maps = window_rows(torch.cat([lo, up, icpt, unstable], 1), windows[i], loc)
                lo, up, icpt, unstable = maps.unsqueeze(2).unflatten(3, (4, -1)).unbind(3)
                lo = torch.where(unstable > 0, alpha.clamp(0.0, 1.0), lo)
                diff = up - lo
            neg = P.clamp(max=0)
            add((neg.flatten(3) @ icpt.flatten(3).transpose(-1, -2)).squeeze(-1))
            P = torch.addcmul(P * lo, neg, diff)

    # concretize at the input box
    x_lower, x_upper = intervals[0]
    c, r = (x_lower + x_upper) / 2, (x_upper - x_lower) / 2
    c, r = window_rows(c, windows[0], loc), window_rows(r, windows[0], loc)
    P = P.flatten(3)
    add((P @ c.flatten(2).unsqueeze(-1) - P.abs() @ r.flatten(2).unsqueeze(-1)).squeeze(-1))
    return bias
