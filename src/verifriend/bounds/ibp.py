"""Interval bound propagation (IBP) and the input checks shared by all bound passes.

Gowal, Dvijotham, Stanforth, Bunel, Qin, Uesato, Arandjelovic, Mann, Kohli, "On the
Effectiveness of Interval Bound Propagation for Training Verifiably Robust Models", 2018
(arXiv:1810.12715); the rules themselves are the operators' ``interval`` methods.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.bounds.relax import Interval, backsubstitute, interval_rule, is_affine
from verifriend.bounds.result import Bounds
from verifriend.errors import UserError


def check_box(graph: Graph, x_lower: Tensor, x_upper: Tensor) -> None:
    """Raise ``UserError`` unless ``graph`` is a Graph and the boxes (B, *input shape) fit it."""
    if not isinstance(graph, Graph):
        raise UserError(f"expected a verifriend Graph, got {type(graph).__name__}.")
    want = tuple(graph.input_shape)
    if x_lower.shape != x_upper.shape or tuple(x_lower.shape[1:]) != want:
        raise UserError(
            f"input bounds of shapes {tuple(x_lower.shape)} and {tuple(x_upper.shape)} do not "
            f"match the graph's input shape (B, {', '.join(map(str, want))})."
        )


def check_problem(graph: Graph, x_lower: Tensor, x_upper: Tensor, C: Tensor | None) -> Tensor:
    """Validate a bound problem; returns ``C`` as (B or 1, m, num_outputs) in the input's dtype."""
    check_box(graph, x_lower, x_upper)
    if graph.dtype is not None and x_lower.dtype != graph.dtype:
        raise UserError(
            f"input bounds are {x_lower.dtype} but the graph is {graph.dtype}; "
            "convert one with graph.to(dtype=...) or tensor.to(...)."
        )
    if bool((x_lower > x_upper).any()):
        raise UserError("input lower bounds exceed upper bounds somewhere.")
    n = graph.num_outputs
    if C is None:
        return torch.eye(n, dtype=x_lower.dtype, device=x_lower.device).unsqueeze(0)
    C = C.to(dtype=x_lower.dtype, device=x_lower.device)
    if C.dim() == 2:
        C = C.unsqueeze(0)
    if C.dim() != 3 or C.shape[2] != n or C.shape[0] not in (1, x_lower.shape[0]):
        raise UserError(
            f"spec matrix of shape {tuple(C.shape)} does not fit: expected (B, m, {n}) "
            f"with B = {x_lower.shape[0]}."
        )
    return C


def interval_pass(graph: Graph, x_lower: Tensor, x_upper: Tensor) -> list[Interval]:
    """Interval bounds of every node, propagated forward from the input box."""
    intervals: list[Interval] = [(x_lower, x_upper)]
    for node in graph.nodes[1:]:
        intervals.append(interval_rule(node, [intervals[i] for i in node.inputs]))
    return intervals


def pre_relu_bounds(graph: Graph, intervals: list[Interval]) -> list[Interval]:
    """Bounds of each ReLU node's input, in graph order."""
    return [intervals[n.inputs[0]] for n in graph.nodes if n.branchable]


def spec_interval(graph: Graph, intervals: list[Interval], C: Tensor) -> Interval:
    """Bounds of ``C @ output`` with C folded into the trailing affine nodes.

    Folding C through the last layers before taking the interval (the "elided final
    layer") is tighter than interval arithmetic on the output and exact for an
    affine network.
    """
    m = C.shape[1]
    A = torch.cat([C, -C], 1).reshape(C.shape[0], 2 * m, *graph.output_shape)
    nodes = graph.nodes
    res = backsubstitute(
        graph, len(nodes) - 1, A, intervals, stop=lambda j: not is_affine(nodes[j])
    )
    return res[:, :m], -res[:, m:]


def ibp(graph: Graph, x_lower: Tensor, x_upper: Tensor, C: Tensor | None = None) -> Bounds:
    """IBP bounds of ``C @ f(x)`` for ``x`` in the box ``[x_lower, x_upper]``.

    ``x_lower``/``x_upper`` are (B, *input_shape); ``C`` is (B, m, num_outputs),
    (m, num_outputs) shared by the batch, or None for the identity.
    """
    C = check_problem(graph, x_lower, x_upper, C)
    intervals = interval_pass(graph, x_lower, x_upper)
    lower, upper = spec_interval(graph, intervals, C)
    return Bounds(lower, upper, pre_relu_bounds(graph, intervals), "ibp", intervals)
