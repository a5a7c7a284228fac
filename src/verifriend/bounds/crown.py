"""CROWN: linear bounds by back-substitution through the graph, intersected with IBP.

Zhang, Weng, Chen, Hsieh, Daniel, "Efficient Neural Network Robustness Certification with
General Activation Functions", NeurIPS 2018.

The pass walks the graph forward. Each node gets the interval of its inputs'
(already tightened) bounds, intersected with plain IBP. The input of every ReLU
and MaxPool is then tightened by back-substituting its own neurons to the input
box (full CROWN intermediates), so later relaxations use the tightest bounds known.
Finally the spec rows ``C @ f(x)`` are back-substituted the same way. Results are
never looser than IBP's because every bound is intersected with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import (
    check_problem,
    interval_pass,
    pre_relu_bounds,
    spec_interval,
)
from verifriend.bounds.patches import (
    backsubstitute_patches,
    group_rows,
    max_patch_width,
    patch_geometry,
    sweep_rows,
)
from verifriend.bounds.relax import Interval, backsubstitute, interval_rule
from verifriend.bounds.result import Bounds
from verifriend.deadline import Deadline, StepClock, check

DEFAULT_MAX_ELEMENTS = 50_000_000


def tight_nodes(graph: Graph) -> list[bool]:
    """For each node, whether plain interval propagation already gives exact bounds.

    The set of values of the input is a box, and stays one under elementwise
    monotone maps; one mixing layer (Linear, Conv, pooling) applied to a box has
    exact per-coordinate intervals, and those stay exact under elementwise maps.
    """
    box = [True] + [False] * (len(graph.nodes) - 1)
    tight = list(box)
    for j, node in enumerate(graph.nodes[1:], 1):
        src = node.inputs[0]
        if node.elementwise:
            box[j], tight[j] = box[src], tight[src]
        elif node.mixing:
            tight[j] = box[src]
    return tight


def refinement_plan(graph: Graph) -> dict[int, str]:
    """Nodes whose bounds CROWN should tighten: ``{node: "unstable" | "all"}``.

    These are the inputs of ReLU, MaxPool and S-shaped (Sigmoid, Tanh) nodes, except where intervals are
    already exact and where the input is itself a ReLU output (its interval, taken
    from its tightened input, is as good as back-substitution would give). A ReLU
    input only needs its unstable neurons; the others' relaxations depend on every neuron.
    """
    tight = tight_nodes(graph)
    plan: dict[int, str] = {}
    for node in graph.nodes:
        if not node.relaxed:
            continue
        src = node.inputs[0]
        if tight[src] or graph.nodes[src].branchable:
            continue
        if node.relax_all or plan.get(src) == "all":
            plan[src] = "all"
        else:
            plan[src] = "unstable"
    return plan


def identity_rows(idx: Tensor, shape, like: Tensor) -> Tensor:
    """Rows ``[e_idx; -e_idx]`` (1, 2c, *shape) over a node of ``shape``."""
    c = idx.numel()
    eye = like.new_zeros(c, math.prod(shape))
    eye[torch.arange(c, device=idx.device), idx] = 1.0
    return torch.cat([eye, -eye]).view(1, 2 * c, *shape)


class _MaxKeepsGrad(torch.autograd.Function):
    """``max(old, new)`` exactly, with the gradient always passed to ``new``."""

    @staticmethod
    def forward(ctx, old: Tensor, new: Tensor) -> Tensor:
        return torch.maximum(old, new)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, grad


def tighten_rows(
    lf: Tensor, uf: Tensor, neuron: Tensor, keep: Tensor, res: Tensor
) -> tuple[Tensor, Tensor]:
    """Intersect flat bounds (B, n) with row results ``res`` (B, 2k) on the neurons
    ``neuron`` (B, k): lower-bound rows first, then negated upper-bound rows; only
    where ``keep`` (B, k). Padding rows are sound too, but using them would make a
    sample's result depend on which samples share its batch."""
    k = neuron.shape[1]
    old_l, old_u = lf.gather(1, neuron), uf.gather(1, neuron)
    res_l, res_u = res[:, :k], -res[:, k:]
    # values are the intersection; gradients (alpha-CROWN) always reach the rows'
    # own bounds, which start equal to the old ones: otherwise rounding at that
    # tie would decide whether their slopes get optimized at all
    new_l = _MaxKeepsGrad.apply(old_l, res_l)
    new_u = -_MaxKeepsGrad.apply(-old_u, -res_u)
    new_l, new_u = torch.where(keep, new_l, old_l), torch.where(keep, new_u, old_u)
    return lf.scatter(1, neuron, new_l), uf.scatter(1, neuron, new_u)


def _refine_patches(graph, t, intervals, rows, max_elements, geometry, deadline) -> Interval:
    chain, windows = geometry
    lower, upper = intervals[t]
    B = lower.shape[0]
    lf, uf = lower.flatten(1), upper.flatten(1)
    groups = group_rows(rows.any(0), graph.nodes[t].shape)
    per_loc = 2 * groups.channel.shape[1] * B * max_patch_width(graph, windows)
    hw = math.prod(graph.nodes[t].shape[1:])
    for part in groups.split(max(1, max_elements // per_loc)):
        check(deadline)
        res = sweep_rows(backsubstitute_patches(graph, chain, windows, part, intervals))
        neuron = part.neurons(hw).expand(B, -1)
        keep = part.valid.flatten() & rows.gather(1, neuron)
        lf, uf = tighten_rows(lf, uf, neuron, keep, res)
    return lf.view_as(lower), uf.view_as(upper)


def _refine(
    graph: Graph,
    t: int,
    intervals: list[Interval],
    rows: Tensor,
    max_elements: int,
    use_patches: bool = True,
    deadline: Deadline | None = None,
) -> Interval:
    """Tighten node ``t``'s bounds on the neurons ``rows`` (B, n) by back-substitution.

    Rows are identity rows (and their negations, for the upper bound). Plain conv
    chains go through patches (every sample computes the union of the wanted rows,
    grouped by location). Otherwise rows wanted by any sample are propagated
    batch-free through the leading affine nodes, then each sample keeps only its
    own wanted rows (padded to a common count). Rows are processed in chunks to
    respect ``max_elements``.
    """
    geometry = patch_geometry(graph, t) if use_patches else None
    if geometry is not None:
        return _refine_patches(graph, t, intervals, rows, max_elements, geometry, deadline)
    lower, upper = intervals[t]
    B = lower.shape[0]
    lf, uf = lower.flatten(1), upper.flatten(1)
    shape = graph.nodes[t].shape
    width = max(math.prod(node.shape) for node in graph.nodes[: t + 1])
    chunk = max(1, max_elements // (2 * B * width))
    for idx in rows.any(0).nonzero().squeeze(1).split(chunk):
        check(deadline)
        c = idx.numel()
        wanted = rows[:, idx]
        k = int(wanted.sum(1).max())
        # per sample: its wanted rows first (stable sort), padded with other real rows
        order = torch.argsort((~wanted).to(torch.uint8), dim=1, stable=True)[:, :k]
        A = identity_rows(idx, shape, lf)
        res = backsubstitute(graph, t, A, intervals, select=torch.cat([order, order + c], 1))
        keep = torch.arange(k, device=idx.device) < wanted.sum(1, keepdim=True)
        lf, uf = tighten_rows(lf, uf, idx[order], keep, res)
    return lf.view_as(lower), uf.view_as(upper)


def crown_intervals(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    base: list[Interval] | None = None,
    use_patches: bool = True,
    tighten: Callable[[int, Interval], Interval] | None = None,
    deadline: Deadline | None = None,
    known: list[Interval] | None = None,
    start: int = 0,
) -> list[Interval]:
    """Bounds of every node, with ReLU/MaxPool inputs tightened by CROWN and IBP.

    ``base`` (plain IBP intervals) is computed when not given; every returned
    bound is at least as tight as it. ``tighten(j, bounds)``, when given, may
    shrink each node's bounds right after they are computed (beta-CROWN clamps
    split pre-activations there, so later layers see the split domain).
    ``deadline`` is checked before each node's back-substitution (raises
    :class:`verifriend.deadline.DeadlineExpired`). ``known`` (bounds valid on the same
    domains, e.g. a parent's) are intersected with every node's, and nodes before
    ``start`` keep them without a back-substitution of their own (a child split in a
    later layer: MN-BaB recomputes only the layers after the split).
    """
    base = base if base is not None else interval_pass(graph, x_lower, x_upper)
    plan = refinement_plan(graph)
    intervals: list[Interval] = [base[0]]
    clock = StepClock(deadline)
    for j, node in enumerate(graph.nodes[1:], 1):
        lo, up = interval_rule(node, [intervals[i] for i in node.inputs])
        lo, up = torch.maximum(lo, base[j][0]), torch.minimum(up, base[j][1])
        if known is not None:
            lo, up = torch.maximum(lo, known[j][0]), torch.minimum(up, known[j][1])
        intervals.append((lo, up))
        mode = plan.get(j) if j >= start else None
        if mode is not None:
            lo, up = intervals[j]
            rows = (up > lo) if mode == "all" else (lo < 0) & (up > 0)
            rows = rows.flatten(1)
            if bool(rows.any()):
                clock.tick()
                intervals[j] = _refine(graph, j, intervals, rows, max_elements, use_patches,
                                       deadline)
        if tighten is not None:
            intervals[j] = tighten(j, intervals[j])
    return intervals


def spec_crown(
    graph: Graph,
    intervals: list[Interval],
    C: Tensor,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Interval:
    """CROWN bounds (B, m) of ``C @ output`` given bounds for every node that needs them."""
    B = intervals[0][0].shape[0]
    width = max(math.prod(n.shape) for n in graph.nodes)
    chunk = max(1, max_elements // (2 * B * width))
    lows, ups = [], []
    for Cc in C.split(chunk, dim=1):
        m = Cc.shape[1]
        A = torch.cat([Cc, -Cc], 1).reshape(Cc.shape[0], 2 * m, *graph.output_shape)
        res = backsubstitute(graph, len(graph.nodes) - 1, A, intervals)
        lows.append(res[:, :m])
        ups.append(-res[:, m:])
    return torch.cat(lows, 1), torch.cat(ups, 1)


def crown(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None = None,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    use_patches: bool = True,
    deadline: Deadline | None = None,
) -> Bounds:
    """CROWN bounds of ``C @ f(x)`` for ``x`` in ``[x_lower, x_upper]``, intersected with IBP.

    Shapes as for :func:`verifriend.bounds.ibp.ibp`. ``max_elements`` caps the size of
    the coefficient tensors of one backward sweep (rows are processed in chunks).
    ``use_patches=False`` forces dense intermediate sweeps (same bounds, slower).
    ``deadline`` is checked between layers (raises ``DeadlineExpired``).
    """
    C = check_problem(graph, x_lower, x_upper, C)
    base = interval_pass(graph, x_lower, x_upper)
    intervals = crown_intervals(
        graph, x_lower, x_upper, max_elements=max_elements, base=base, use_patches=use_patches,
        deadline=deadline,
    )
    lower, upper = spec_crown(graph, intervals, C, max_elements=max_elements)
    for lo, up in (spec_interval(graph, intervals, C), spec_interval(graph, base, C)):
        lower, upper = torch.maximum(lower, lo), torch.minimum(upper, up)
    return Bounds(lower, upper, pre_relu_bounds(graph, intervals), "crown", intervals)
