"""Patch-mode back-substitution for intermediate bounds of convolutional layers.

The linear coefficients of one conv neuron on an earlier layer are nonzero only
inside its receptive field. When the path from a node back to the input is a
plain chain of patchable nodes (Conv2d / Affine / ReLU: each operator's
``backward_patches`` rule), each row's coefficients are stored
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
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.bounds.ops import Interval
from verifriend.bounds.ops.base import PatchStep, Window, window_rows

Pair = tuple[int, int]


def conv_chain(graph: Graph, start: int) -> list[int] | None:
    """Nodes from ``start`` back to the input if they form a plain chain of patchable nodes
    over 3-d feature maps with at least one that grows the window; else None."""
    chain, j = [], start
    while j != 0:
        node = graph.nodes[j]
        if not node.patchable or len(node.shape) != 3:
            return None
        chain.append(j)
        j = node.inputs[0]
    if len(graph.input_shape) != 3 or not any(graph.nodes[i].grows_window for i in chain):
        return None
    return chain + [0]


def chain_windows(graph: Graph, chain: list[int]) -> dict[int, Window]:
    """Window geometry on the output of every chain node (``chain[0]`` has 1x1 windows)."""
    win = Window((1, 1), (1, 1), (0, 0))
    windows = {chain[0]: win}
    for j, i in pairwise(chain):
        win = graph.nodes[j].patch_window(win)
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
        alpha = lower_slopes.get(j) if lower_slopes else None
        step = PatchStep(intervals[i], graph.nodes[i].shape, windows[i], loc, alpha,
                         graph.nodes[i].zero_off_map)
        P, term = graph.nodes[j].backward_patches(P, step)
        add(term)

    # concretize at the input box
    x_lower, x_upper = intervals[0]
    c, r = (x_lower + x_upper) / 2, (x_upper - x_lower) / 2
    c, r = window_rows(c, windows[0], loc), window_rows(r, windows[0], loc)
    P = P.flatten(3)
    add((P @ c.flatten(2).unsqueeze(-1) - P.abs() @ r.flatten(2).unsqueeze(-1)).squeeze(-1))
    return bias
