"""The backward sweep (CROWN's back-substitution) over the operators' rules.

Each operator (:mod:`verifriend.bounds.ops`) has an interval rule and a backward rule (see
:mod:`verifriend.bounds.ops.base`); IBP, CROWN and the alpha/beta passes are sweeps over
the same rules. This module holds the backward sweep and the concretization at a box.

Back-substitution as in CROWN (Zhang, Weng, Chen, Hsieh, Daniel, NeurIPS 2018) and
DeepPoly (Singh, Gehr, Pueschel, Vechev, "An Abstract Domain for Certifying Neural
Networks", POPL 2019).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.bounds.ops import Interval, Node
from verifriend.bounds.ops.base import center_radius
from verifriend.deadline import Deadline, gradient_check


def is_affine(node: Node) -> bool:
    """True for nodes whose output is an exact affine function of their inputs."""
    return bool(node.inputs) and not node.relaxed


def interval_rule(node: Node, ins: list[Interval]) -> Interval:
    """Apply the node's interval rule to its input intervals."""
    return node.interval(*ins)


# ---------------------------------------------------------------- backward sweep


def concretize(A: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``min A . x`` over the box ``[lower, upper]``: (Ba, S, *shape) x (B, *shape) -> (B, S)."""
    c, r = center_radius(lower.flatten(1).unsqueeze(-1), upper.flatten(1).unsqueeze(-1))
    a = A.flatten(2)
    return (a @ c - a.abs() @ r).squeeze(-1)


def _select_rows(t: Tensor, select: Tensor) -> Tensor:
    """Rows ``select`` (B, S') of ``t`` (Ba, S, ...) per batch element -> (B, S', ...)."""
    if t.shape[0] == 1:
        return t[0][select]
    return t[torch.arange(t.shape[0], device=t.device).view(-1, 1), select]


def backsubstitute(
    graph: Graph,
    start: int,
    A: Tensor,
    intervals: list[Interval | None],
    *,
    lower_slopes: dict[int, Tensor] | None = None,
    input_terms: dict[int, Tensor] | None = None,
    output_terms: dict[int, Tensor] | None = None,
    stop: Callable[[int], bool] | None = None,
    select: Tensor | None = None,
    record: dict[int, Tensor] | None = None,
    deadline: Deadline | None = None,
) -> Tensor:
    """Lower bound ``(B, S)`` of the linear functions ``A . v_start`` over the input box.

    ``A`` is ``(Ba, S, *shape of node start)`` with ``Ba`` = B or 1 (shared by the
    batch). Coefficients flow in reverse topological order and are summed where a
    node feeds several others. ``intervals[j]`` must hold bounds of node ``j`` for the
    input node, for inputs of ReLU/MaxPool nodes reached, and for every node where
    ``stop(j)`` is true: there the linear function is concretized at the interval
    instead of being propagated further (IBP's elided final layer uses this).
    ``lower_slopes[j]`` overrides the lower slopes of unstable neurons of ReLU node
    ``j`` (alpha-CROWN). ``input_terms[j]`` (B, S, *shape of j's input) is added to
    the coefficients on node ``j``'s input after ``j``'s rule: beta-CROWN's split
    multipliers enter there (the caller makes sure the added term is sound).
    ``output_terms[j]`` (B, S, *shape of j) is added to the coefficients on node ``j``
    itself before its rule (multi-neuron constraints' ``gamma^T P^``).
    ``select`` (B, S') picks per batch element which of the S
    shared rows are wanted; shared rows stay batch-free (cheap) until the first
    node whose rule depends on the batch. ``record``, when given, receives the
    coefficients reaching each ReLU node's output and the input node (key 0).
    ``deadline`` is checked at every node, in this pass and (for coefficients that need a
    gradient) in the backward pass through it (raises ``DeadlineExpired``).
    """
    pending: dict[int, Tensor] = {start: A}
    bias: Tensor | None = None
    for j in range(start, -1, -1):
        a = pending.pop(j, None)
        extra_out = output_terms.get(j) if output_terms else None
        if extra_out is not None:
            a = extra_out if a is None else a + extra_out
        if a is None:
            continue
        if deadline is not None:
            deadline.check()
            if a.requires_grad:
                a.register_hook(gradient_check(deadline))
        node = graph.nodes[j]
        if j == 0 or (stop is not None and stop(j)):
            if record is not None and j == 0:
                record[0] = a
            term = concretize(a, *intervals[j])
        else:
            if select is not None and node.relaxed and a.shape[0] == 1:
                a = _select_rows(a, select)
                pending = {i: _select_rows(v, select) for i, v in pending.items()}
                bias = None if bias is None else _select_rows(bias, select)
                select = None
            if record is not None and node.branchable:
                record[j] = a
            ins = [intervals[i] for i in node.inputs]
            alpha = lower_slopes.get(j) if lower_slopes else None
            coefs, term = node.backward(a, ins, alpha)
            extra = input_terms.get(j) if input_terms else None
            if extra is not None:
                coefs = (coefs[0] + extra, *coefs[1:])
            for i, ai in zip(node.inputs, coefs):
                pending[i] = pending[i] + ai if i in pending else ai
        if term is not None:
            bias = term if bias is None else bias + term
    if select is not None:
        bias = _select_rows(bias, select)
    return bias
