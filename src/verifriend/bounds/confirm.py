"""Float64 confirmation of optimized bounds before a proof is reported.

The float32 optimization picks alphas and betas; soundness does not depend on how
they were found, only on the arithmetic that turns them into a bound. Here that
arithmetic is redone in float64 with the parameters held fixed: the intermediate
bounds (CROWN + IBP, splits clamped, and the state's optimized intermediate rows)
and the final back-substitution (any alpha in [0, 1], beta >= 0 and gamma >= 0 give a
sound bound: Xu et al., ICLR 2021; Wang et al., NeurIPS 2021; Ferrari et al., ICLR 2022).
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifriend.bounds.crown import DEFAULT_MAX_ELEMENTS
from verifriend.bounds.graph import Graph
from verifriend.bounds.optimizer import OptState, finish_bounds, prepare_problem, problem_lower
from verifriend.bounds.result import Bounds
from verifriend.bounds.splits import Splits
from verifriend.deadline import Deadline

F64 = torch.float64


def confirm_bound(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None,
    state: OptState,
    splits: Splits | None = None,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    intervals: list | None = None,
    deadline: Deadline | None = None,
    refine_from: int | None = None,
) -> Bounds:
    """The bounds given by the fixed ``state`` (and ``splits``), recomputed in float64.

    Same problem shapes as :func:`verifriend.bounds.beta_crown.beta_crown`; the state
    must hold one row per domain (use ``state.select``). Domains found empty in
    float64 get ``lower = +inf``. ``intervals`` (float64 node bounds valid on each
    domain, e.g. the root's) replaces the CROWN pass for intermediate bounds, as
    ``beta_crown(intervals=...)`` does: the splits are clamped and propagated.
    ``refine_from``: CROWN recomputes the nodes from this one on, intersected with
    ``intervals`` (as ``beta_crown(refine_from=...)`` does).
    ``deadline`` is checked in the CROWN pass (raises ``DeadlineExpired``).
    """
    g64 = graph.to(dtype=F64)
    xl, xu = x_lower.to(F64), x_upper.to(F64)
    C64 = None if C is None else C.to(F64)
    with torch.no_grad():
        # the intermediate rows are the state's, not re-derived: float64 may see a
        # slightly different set of unstable neurons
        known = None if intervals is None else [(a.to(F64), b.to(F64)) for a, b in intervals]
        p = prepare_problem(
            g64, xl, xu, C64, splits, state.bound_upper, max_elements, state.rows, known,
            deadline, refine_from,
        )
        s64 = state.to(F64)
        # the multi-neuron rows are float64 already (their offsets rounded up for it)
        p.mnc = {r: nr.to(dtype=F64, device=xl.device) for r, nr in state.mnc.items()}
        # betas of nodes without any split in these domains multiply zero signs
        betas = {r: b for r, b in s64.betas.items() if r in p.signs}
        lower_rows = problem_lower(g64, p, s64.alphas, betas, s64.inner, s64.gammas)
        return finish_bounds(g64, p, lower_rows, state.bound_upper, "confirmed-float64", s64.inner)


def proof_holds(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None,
    state: OptState,
    splits: Splits | None = None,
    **options,
) -> Tensor:
    """(D, m) bool: whether each row's float64 lower bound is > 0 (empty domains: True)."""
    return confirm_bound(graph, x_lower, x_upper, C, state, splits, **options).lower > 0
