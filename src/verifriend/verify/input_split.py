"""Branch and bound over the input box, for low-dimensional inputs (e.g. ACAS Xu).

With few input dimensions, halving the box shrinks every intermediate bound, so
splitting inputs beats splitting ReLUs. Open boxes wait in a pool; each round
bounds the batch of boxes with the worst margins by CROWN (worst first, so that
the search reaches an unsafe corner early and proofs are not held up by it). A box
that looks proved is confirmed by recomputing CROWN in float64. For every open box
the centre and the corner that minimizes the worst row's linear lower bound are
tried as counterexamples. Each open box is split in half along the dimension whose
width times the magnitude of the open rows' input coefficients is largest (the
dimension that moves the bound most).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from verifriend.bounds.crown import crown
from verifriend.bounds.graph import Graph
from verifriend.bounds.relax import backsubstitute
from verifriend.verify.bab import BabOutcome, clause_margin

F64 = torch.float64


def _input_coefficients(graph: Graph, A: Tensor, intervals) -> Tensor:
    """(D, k, n_in) input coefficients of the CROWN lower bounds of rows ``A`` (D, k, m)."""
    # the bound is affine in the input on a box of width zero, with the same
    # relaxations: autograd at the centre reads the coefficients off
    centre = ((intervals[0][0] + intervals[0][1]) / 2).requires_grad_(True)
    ivs = [(centre, centre), *intervals[1:]]
    k = A.shape[1]
    coefs = []
    for r in range(k):  # one row at a time: the bound of a row is a sum over the box
        with torch.enable_grad():
            val = backsubstitute(graph, len(graph.nodes) - 1, A[:, r:r + 1], ivs)
            (g,) = torch.autograd.grad(val.sum(), centre)
        coefs.append(g.flatten(1))
    return torch.stack(coefs, 1)


def input_bab(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    clause: Tensor,
    *,
    deadline: float,
    check,
    batch: int = 1024,
    max_domains: int = 50_000_000,
) -> BabOutcome:
    """Split the input box until every piece is proved (CROWN, confirmed in float64),
    a counterexample is found (``check(xs) -> (x, y) | None``), or time runs out."""
    n_clauses = int(clause.max()) + 1
    g64 = graph.to(dtype=F64)
    pool_lo, pool_hi = x_lower, x_upper
    pool_prio = torch.full((x_lower.shape[0],), float("-inf"), dtype=x_lower.dtype)
    domains = leaves = 0
    while pool_lo.shape[0]:
        if time.monotonic() > deadline:
            return BabOutcome("timeout", domains, leaves)
        if domains >= max_domains:
            return BabOutcome("unknown", domains, leaves)
        if pool_lo.shape[0] > batch:
            take = torch.zeros(pool_lo.shape[0], dtype=torch.bool)
            take[pool_prio.topk(batch, largest=False).indices] = True
            lo, hi = pool_lo[take], pool_hi[take]
            pool_lo, pool_hi, pool_prio = pool_lo[~take], pool_hi[~take], pool_prio[~take]
        else:
            lo, hi = pool_lo, pool_hi
            pool_lo, pool_hi, pool_prio = lo[:0], hi[:0], pool_prio[:0]
        with torch.no_grad():
            b = crown(graph, lo, hi)
        domains += lo.shape[0]
        margin = clause_margin(b.lower, clause, n_clauses)
        proved = margin > 0
        if bool(proved.any()):
            idx = proved.nonzero().squeeze(1)
            with torch.no_grad():
                b64 = crown(g64, lo[idx].to(F64), hi[idx].to(F64))
            proved[idx] = clause_margin(b64.lower, clause, n_clauses) > 0
        leaves += int(proved.sum())
        keep = (~proved).nonzero().squeeze(1)
        if keep.numel() == 0:
            continue
        lo, hi, lower, margin = lo[keep], hi[keep], b.lower[keep], margin[keep]
        intervals = [(l[keep], u[keep]) for l, u in b.intervals]
        # two coefficient rows per box: the worst row (its minimizing corner is the
        # candidate counterexample) and the sum of the open rows (it picks the split)
        worst = torch.nn.functional.one_hot(lower.argmin(1), lower.shape[1]).to(lo.dtype)
        A = torch.stack([worst, (lower <= 0).to(lo.dtype)], 1)
        coef = _input_coefficients(graph, A, intervals)
        flo, fhi = lo.flatten(1), hi.flatten(1)
        corner = torch.where(coef[:, 0] > 0, flo, fhi)
        hit = check(torch.cat([(flo + fhi) / 2, corner]).to(F64))
        if hit is not None:
            return BabOutcome("sat", domains, leaves, hit)
        dims = (coef[:, 1].abs() * (fhi - flo)).argmax(1)
        ar = torch.arange(lo.shape[0])
        mid = ((flo + fhi) / 2)[ar, dims]
        hi_left, lo_right = fhi.clone(), flo.clone()
        hi_left[ar, dims] = mid
        lo_right[ar, dims] = mid
        pool_lo = torch.cat([pool_lo, lo, lo_right.view_as(lo)])
        pool_hi = torch.cat([pool_hi, hi_left.view_as(hi), hi])
        pool_prio = torch.cat([pool_prio, margin, margin])
    return BabOutcome("unsat", domains, leaves)
