"""The bounds of intermediate neurons optimized together with the final rows (alpha-CROWN
with ``intermediate=True``): which neurons get their own rows, their slopes' start, and the
node bounds those rows give.

Xu, Zhang, Wang, Wang, Jana, Lin, Hsieh, "Fast and Complete: Enabling Complete Neural Network
Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR 2021 (one set of
slopes per intermediate neuron and bound side, as auto_LiRPA does).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.crown import identity_rows, refinement_plan, tighten_rows
from verifriend.bounds.graph import Graph
from verifriend.bounds.patches import (
    RowGroups,
    backsubstitute_patches,
    group_rows,
    patch_geometry,
    sweep_rows,
    window_rows,
)
from verifriend.bounds.relax import Interval, backsubstitute, interval_rule
from verifriend.deadline import Deadline, check, gradient_check


@dataclass
class IntermediateRows:
    """Which neurons of one intermediate node get optimized bounds, per domain.

    ``neuron`` (D, k) are the flat neuron indices of each domain's rows, ``keep``
    (D, k) is False on padding rows. Dense rows: ``idx`` (c,) is the union of the
    neurons and ``pick`` (D, 2k) chooses each domain's rows among the identity rows
    ``[e_idx; -e_idx]``. Patch rows: ``groups`` holds the union grouped by location,
    shared by every domain (``neuron`` then lists ``groups.neurons``).
    """

    neuron: Tensor
    keep: Tensor
    idx: Tensor | None = None
    pick: Tensor | None = None
    groups: RowGroups | None = None

    def select(self, index: Tensor) -> IntermediateRows:
        return dataclasses.replace(
            self,
            neuron=self.neuron[index],
            keep=self.keep[index],
            pick=None if self.pick is None else self.pick[index],
        )

def plan_rows(graph: Graph, intervals: list[Interval]) -> dict[int, IntermediateRows]:
    """Rows to optimize: the neurons CROWN refines that are still loose."""
    out = {}
    for t, mode in refinement_plan(graph).items():
        lo, up = intervals[t]
        wanted = ((up > lo) if mode == "all" else (lo < 0) & (up > 0)).flatten(1)
        if not bool(wanted.any()):
            continue
        if patch_geometry(graph, t) is not None:
            groups = group_rows(wanted.any(0), graph.nodes[t].shape)
            neuron = groups.neurons(math.prod(graph.nodes[t].shape[1:]))
            neuron = neuron.expand(wanted.shape[0], -1)
            keep = groups.valid.flatten() & wanted.gather(1, neuron)
            out[t] = IntermediateRows(neuron, keep, groups=groups)
            continue
        idx = wanted.any(0).nonzero().squeeze(1)
        wanted = wanted[:, idx]
        k = int(wanted.sum(1).max())
        # per domain: its wanted rows first (stable sort), padded with other rows
        order = torch.argsort((~wanted).to(torch.uint8), dim=1, stable=True)[:, :k]
        keep = torch.arange(k, device=idx.device) < wanted.sum(1, keepdim=True)
        pick = torch.cat([order, order + idx.numel()], 1)
        out[t] = IntermediateRows(idx[order], keep, idx, pick)
    return out

def crown_slopes(graph: Graph, intervals: list[Interval], r: int, S: int) -> Tensor:
    lo, up = intervals[graph.nodes[r].inputs[0]]
    return graph.nodes[r].initial_slopes(lo, up).unsqueeze(1).expand(-1, S, *lo.shape[1:]).clone()

def inner_init(graph: Graph, p, t: int, rw: IntermediateRows) -> dict[int, Tensor]:
    """CROWN's slopes for the rows of node ``t``: dense maps, or windows in patch mode."""
    if rw.groups is None:
        S = rw.pick.shape[1]
        return {r: crown_slopes(graph, p.intervals, r, S) for r in graph.relu_nodes() if r < t}
    chain, windows = patch_geometry(graph, t)
    rows = 2 * rw.groups.channel.shape[1]
    out = {}
    for j in chain:
        if graph.nodes[j].branchable:
            lo, up = p.intervals[graph.nodes[j].inputs[0]]
            init = graph.nodes[j].initial_slopes(lo, up)
            m = window_rows(init, windows[j], rw.groups.loc).unsqueeze(2)
            out[j] = m.expand(-1, -1, rows, -1, -1, -1).contiguous()
    return out

def inner_intervals(graph: Graph, p, inner: dict) -> list[Interval]:
    """Bounds of every node with the intermediate rows re-bounded by their alphas.

    Each new bound is intersected with the fixed CROWN bounds of the domain, so it
    is sound and never looser; the split clamps are applied again.
    """
    ivs: list[Interval] = [p.intervals[0]]
    for j, node in enumerate(graph.nodes[1:], 1):
        lo, up = interval_rule(node, [ivs[i] for i in node.inputs])
        lo, up = torch.maximum(lo, p.intervals[j][0]), torch.minimum(up, p.intervals[j][1])
        rw = p.inner_rows.get(j)
        if rw is not None:
            check(p.deadline)
            # (reads nodes < j only; checks the deadline at every node, forward and backward)
            res = inner_rows_bound(graph, j, rw, ivs, inner[j], p.deadline)
            lf, uf = tighten_rows(lo.flatten(1), up.flatten(1), rw.neuron, rw.keep, res)
            lo, up = lf.view_as(lo), uf.view_as(up)
        if p.tighten is not None:
            lo, up = p.tighten(j, (lo, up))
        ivs.append((lo, up))
    return ivs

def inner_rows_bound(graph: Graph, t: int, rw: IntermediateRows, ivs, slopes,
                      deadline: Deadline | None = None) -> Tensor:
    """Lower bounds (D, 2k) of the rows ``rw`` of node ``t`` with their own slopes."""
    if rw.groups is not None:
        chain, windows = patch_geometry(graph, t)
        res = backsubstitute_patches(graph, chain, windows, rw.groups, ivs, lower_slopes=slopes)
        if deadline is not None and res.requires_grad:
            res.register_hook(gradient_check(deadline))  # the backward pass checks it too
        return sweep_rows(res)
    A = identity_rows(rw.idx, graph.nodes[t].shape, ivs[0][0])
    return backsubstitute(graph, t, A, ivs, lower_slopes=slopes, select=rw.pick,
                          deadline=deadline)
