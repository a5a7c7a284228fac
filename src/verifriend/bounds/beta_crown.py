"""beta-CROWN: alpha-CROWN on domains with ReLU splits, one Lagrange multiplier (beta) per
split neuron and bound row.

Wang, Zhang, Xu, Lin, Jana, Hsieh, Kolter, "Beta-CROWN: Efficient Bound Propagation with
Per-neuron Split Constraints for Neural Network Robustness Verification", NeurIPS 2021.
The optimizer itself is shared with alpha-CROWN (:mod:`verifriend.bounds.optimizer`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifriend.bounds.crown import DEFAULT_MAX_ELEMENTS
from verifriend.bounds.graph import Graph
from verifriend.bounds.multineuron_terms import gamma_terms
from verifriend.bounds.ops import Interval
from verifriend.bounds.optimizer import OptState, optimize_bounds, prepare_problem
from verifriend.bounds.relax import backsubstitute
from verifriend.bounds.result import Bounds
from verifriend.bounds.splits import Splits


def beta_crown(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None,
    splits: Splits,
    *,
    warm_start: OptState | None = None,
    parent: Tensor | None = None,
    iterations: int = 20,
    lr: float = 0.1,
    **options,
) -> tuple[Bounds, OptState]:
    """beta-CROWN bounds of D domains: box d with the ReLU splits ``splits`` (len D).

    Alphas and split multipliers betas are optimized jointly, as in
    :func:`alpha_crown` (``lr_beta`` sets the betas' own learning rate), but
    intermediate bounds are only optimized with ``intermediate=True`` (in branch
    and bound the parent's bounds, clamped by the splits, usually suffice).
    Every learning rate decays by ``lr_decay`` per step.
    ``intervals`` (node bounds valid on each domain, e.g. its parent's) skips the
    CROWN pass for intermediate bounds: they are clamped by the splits and
    propagated by intervals instead (faster, looser; branch and bound's default).
    ``warm_start`` is a parent batch's state; ``parent`` (D,) maps each domain to its
    row there (None: the state already has D rows). A domain whose splits (or box)
    contain no input gets ``lower = +inf`` and ``upper = -inf``: it needs no proof.
    """
    if warm_start is not None and parent is not None:
        warm_start = warm_start.select(parent)
    return optimize_bounds(
        graph,
        x_lower,
        x_upper,
        C,
        splits,
        warm_start=warm_start,
        iterations=iterations,
        lr=lr,
        method="beta-crown",
        **options,
    )


def relu_output_coefficients(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    splits: Splits,
    state: OptState,
    intervals: list[Interval],
    C: Tensor | None = None,
) -> dict[int, Tensor]:
    """Per ReLU node r, the coefficients (D, S, *shape of r) of its outputs in the linear
    lower bound of each optimized row, with ``state``'s slopes and split multipliers, on
    domains with node bounds ``intervals`` (as :func:`beta_crown` returned them); key 0
    holds the coefficients of the input (the bound's minimizer is a box corner)."""
    p = prepare_problem(graph, x_lower, x_upper, C, splits, state.bound_upper, DEFAULT_MAX_ELEMENTS,
                 known=intervals)
    terms = {r: -b * p.signs[r] for r, b in state.betas.items() if r in p.signs}
    out_terms = None
    if state.gammas:  # the multi-neuron rows' terms are part of the bound too
        rows = {r: nr.to(dtype=x_lower.dtype, device=x_lower.device)
                for r, nr in state.mnc.items()}
        gammas = {r: g.to(x_lower.dtype) for r, g in state.gammas.items()}
        out_terms, in_terms, _ = gamma_terms(graph, rows, gammas)
        for r, t in in_terms.items():
            terms[r] = terms[r] + t if r in terms else t
    recorded: dict[int, Tensor] = {}
    with torch.no_grad():
        backsubstitute(graph, len(graph.nodes) - 1, p.rows, p.intervals,
                       lower_slopes=state.alphas, input_terms=terms, output_terms=out_terms,
                       record=recorded)
    return recorded
