"""Branch and bound over the input box, for low-dimensional inputs (e.g. ACAS Xu).

With few input dimensions, halving the box shrinks every intermediate bound, so
splitting inputs beats splitting ReLUs. Boxes are bounded by CROWN in batches;
a box that looks proved is confirmed by recomputing CROWN in float64; the
centre of every open box is tried as a counterexample. Each open box is split
in half along the dimension whose width times the magnitude of the worst row's
input coefficients is largest (the dimension that moves the bound most).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from verifriend.bounds.crown import crown, crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.relax import backsubstitute
from verifriend.verify.bab import BabOutcome, clause_margin

F64 = torch.float64


def _split_dims(graph: Graph, lo: Tensor, hi: Tensor, rows: Tensor) -> Tensor:
    """(D,) the input dimension to halve in each box."""
    with torch.no_grad():
        intervals = crown_intervals(graph, lo, hi)
    coef = _input_coefficients(graph, rows.to(lo.dtype).unsqueeze(1), intervals)
    return (coef.abs() * (hi - lo).flatten(1)).argmax(1)


def _input_coefficients(graph: Graph, A: Tensor, intervals) -> Tensor:
    """(D, n_in) input coefficients of the CROWN lower bound of rows ``A`` (D, 1, m)."""
    # the bound is affine in the input on a box of width zero, with the same
    # relaxations: autograd at the centre reads the coefficients off
    centre = ((intervals[0][0] + intervals[0][1]) / 2).requires_grad_(True)
    ivs = [(centre, centre), *intervals[1:]]
    with torch.enable_grad():
        val = backsubstitute(graph, len(graph.nodes) - 1, A, ivs)
        (g,) = torch.autograd.grad(val.sum(), centre)
    return g.flatten(1)


def input_bab(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    clause: Tensor,
    *,
    deadline: float,
    check,
    batch: int = 256,
    max_domains: int = 5_000_000,
) -> BabOutcome:
    """Split the input box until every piece is proved (CROWN, confirmed in float64),
    a counterexample is found (``check(xs) -> (x, y) | None``), or time runs out."""
    n_clauses = int(clause.max()) + 1
    g64 = graph.to(dtype=F64)
    open_lo, open_hi = x_lower, x_upper
    domains = leaves = 0
    while open_lo.shape[0]:
        if time.monotonic() > deadline:
            return BabOutcome("timeout", domains, leaves)
        if domains >= max_domains:
            return BabOutcome("unknown", domains, leaves)
        lo, hi = open_lo[:batch], open_hi[:batch]
        open_lo, open_hi = open_lo[batch:], open_hi[batch:]
        with torch.no_grad():
            b = crown(graph, lo, hi)
        domains += lo.shape[0]
        margin = clause_margin(b.lower, clause, n_clauses)
        proved = margin > 0
        if bool(proved.any()):
            idx = proved.nonzero().squeeze(1)
            with torch.no_grad():
                b64 = crown(g64, lo[idx].to(F64), hi[idx].to(F64))
            ok = clause_margin(b64.lower, clause, n_clauses) > 0
            proved[idx] = ok
        leaves += int(proved.sum())
        keep = (~proved).nonzero().squeeze(1)
        if keep.numel() == 0:
            continue
        lo, hi = lo[keep], hi[keep]
        hit = check(((lo + hi) / 2).flatten(1).to(F64))
        if hit is not None:
            return BabOutcome("sat", domains, leaves, hit)
        rows = (b.lower[keep] <= 0).to(lo.dtype)
        dims = _split_dims(graph, lo, hi, rows)
        mid = ((lo + hi) / 2).flatten(1).gather(1, dims.unsqueeze(1)).squeeze(1)
        ar = torch.arange(lo.shape[0])
        hi_left, lo_right = hi.flatten(1).clone(), lo.flatten(1).clone()
        hi_left[ar, dims] = mid
        lo_right[ar, dims] = mid
        open_lo = torch.cat([lo, lo_right.view_as(lo), open_lo])
        open_hi = torch.cat([hi_left.view_as(hi), hi, open_hi])
    return BabOutcome("unsat", domains, leaves)
