"""Branch and bound over the input box, for low-dimensional inputs (e.g. ACAS Xu).

With few input dimensions, halving the box shrinks every intermediate bound, so
splitting inputs beats splitting ReLUs. Open boxes wait in a pool; each round
splits the batch of boxes with the worst margins (worst first, so that the search
reaches an unsafe corner early) and bounds the halves by CROWN. A box that looks
proved is confirmed by recomputing CROWN in float64. For every open box the centre
and the corner that minimizes its target row's linear lower bound are tried as
counterexamples.

Split choice: the dimension with the largest width times |input coefficient of the
open clauses' best rows| (the dimension that moves the linear bound most). That
rule can starve a dimension the linear bound looks flat in while its width keeps
ReLUs unstable (seen on ACAS Xu: one dimension left at half its range while the
others were split to 1e-5), so when the box's widest dimension (relative to the
root box) is more than ``LAG`` times wider, both splits are bounded and the one
whose worse half is better is kept.

Input bisection as in ReluVal (Wang, Pei, Whitehouse, Yang, Jana, "Formal Security Analysis
of Neural Networks using Symbolic Intervals", USENIX Security 2018), whose "smear" split
(width times gradient) the coefficient rule above follows, with CROWN bounds per box.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from verifriend.bounds.crown import crown
from verifriend.bounds.graph import Graph
from verifriend.bounds.relax import backsubstitute
from verifriend.deadline import Deadline, DeadlineExpired, StepClock
from verifriend.verify.bab import (
    BabOutcome,
    LeafBudget,
    clause_margin,
    target_rows,
    unstable_count,
)

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


def _children(lo: Tensor, hi: Tensor, dims: Tensor) -> tuple[Tensor, Tensor]:
    """Both halves of every box along ``dims``: (2D, ...) lows and highs, lower halves first."""
    flo, fhi = lo.flatten(1), hi.flatten(1)
    ar = torch.arange(lo.shape[0], device=lo.device)
    dims = dims.to(lo.device)
    mid = ((flo + fhi) / 2)[ar, dims]
    hi_left, lo_right = fhi.clone(), flo.clone()
    hi_left[ar, dims] = mid
    lo_right[ar, dims] = mid
    return torch.cat([lo, lo_right.view_as(lo)]), torch.cat([hi_left.view_as(hi), hi])


class _Boxes:
    """Open boxes, each with its margin and the split its bound suggests."""

    def __init__(self, lo: Tensor, hi: Tensor, margin: Tensor, dim: Tensor):
        self.lo, self.hi, self.margin, self.dim = lo, hi, margin, dim

    def __len__(self) -> int:
        return self.lo.shape[0]

    def add(self, other: _Boxes) -> None:
        self.lo, self.hi = torch.cat([self.lo, other.lo]), torch.cat([self.hi, other.hi])
        self.margin = torch.cat([self.margin, other.margin])
        self.dim = torch.cat([self.dim, other.dim])

    def pop_worst(self, k: int) -> _Boxes:
        take = torch.zeros(len(self), dtype=torch.bool, device=self.margin.device)
        take[self.margin.topk(min(k, len(self)), largest=False).indices] = True
        out = _Boxes(self.lo[take], self.hi[take], self.margin[take], self.dim[take])
        self.lo, self.hi = self.lo[~take], self.hi[~take]
        self.margin, self.dim = self.margin[~take], self.dim[~take]
        return out


def input_bab(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    clause: Tensor,
    *,
    deadline: Deadline,
    check,
    batch: int = 1024,
    max_domains: int = 50_000_000,
    exact_leaf=None,
) -> BabOutcome:
    """Split the input box until every piece is proved (CROWN, confirmed in float64),
    a counterexample is found (``check(xs) -> (x, y) | None``), or time runs out.

    ``exact_leaf(lo, hi, seconds) -> ("unsat" | "sat" | "unknown", x)`` decides a box
    (batch of one) with few unstable neurons (a MILP with a binary each) within
    ``seconds``; :class:`LeafBudget` says which boxes and how often; other boxes are split.
    ``deadline`` is checked between steps and inside every bound; past it: "timeout".
    """
    try:
        return _search(graph, x_lower, x_upper, clause, deadline, check, batch, max_domains,
                       exact_leaf)
    except DeadlineExpired:
        return BabOutcome("timeout", 0, 0)


def _search(graph, x_lower, x_upper, clause, deadline, check, batch, max_domains,
            exact_leaf) -> BabOutcome:
    """The search of :func:`input_bab`: bound the root box, then split the worst boxes."""
    root_width = (x_upper - x_lower).flatten(1).amax(0).clamp(min=1e-30)
    search = _SearchState(graph, clause, deadline, check, exact_leaf)
    proved, pool, hit = search.bound(x_lower, x_upper)
    search.leaves += int(proved.sum())
    if hit is not None:
        return search.outcome("sat", hit)
    clock = StepClock(deadline)
    while len(pool):
        try:
            clock.tick()  # stops before a step that would end after the deadline
        except DeadlineExpired:
            return search.outcome("timeout")
        if search.domains >= max_domains:
            return search.outcome("unknown")
        par = pool.pop_worst(batch)
        lo, hi, ia = _split_candidates(par, root_width)
        try:
            proved, kids, hit = search.bound(lo, hi)
        except DeadlineExpired:
            return search.outcome("timeout")
        if hit is not None:
            return search.outcome("sat", hit)
        n_leaves, kept = _keep_better(len(par), ia, proved, kids)
        search.leaves += n_leaves
        pool.add(kept)
    # a linear region the LP could not decide (a near-tie) leaves the answer open
    return search.outcome("unknown" if search.undecided else "unsat")


class _SearchState:
    """The bounding side of the input split search, with its counts: ``domains`` bounded,
    ``leaves`` proved, ``undecided`` linear regions the LP left open."""

    def __init__(self, graph: Graph, clause: Tensor, deadline: Deadline, check, exact_leaf):
        self.graph, self.clause, self.deadline = graph, clause, deadline
        self.check, self.exact_leaf = check, exact_leaf
        self.n_clauses = int(clause.max()) + 1
        self.g64 = graph.to(dtype=F64)
        self.domains = self.leaves = self.undecided = 0
        self.budget = LeafBudget()

    def outcome(self, status: str, x=None) -> BabOutcome:
        return BabOutcome(status, self.domains, self.leaves, x)

    def bound(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, _Boxes, tuple | None]:
        """Bound boxes: (proved mask, the open ones with their suggested split, a hit)."""
        graph, clause, n_clauses, deadline = self.graph, self.clause, self.n_clauses, self.deadline
        with torch.no_grad():
            b = crown(graph, lo, hi, deadline=deadline)
        self.domains += lo.shape[0]
        margin = clause_margin(b.lower, clause, n_clauses)
        proved = margin > 0
        if bool(proved.any()):
            idx = proved.nonzero().squeeze(1)
            with torch.no_grad():
                b64 = crown(self.g64, lo[idx].to(F64), hi[idx].to(F64), deadline=deadline)
            proved[idx] = clause_margin(b64.lower, clause, n_clauses) > 0
        if self.exact_leaf is not None:
            x = self._exact_leaves(lo, hi, b.intervals, proved)
            if x is not None:
                return proved, _Boxes(lo[:0], hi[:0], margin[:0], margin[:0].long()), x
        keep = (~proved).nonzero().squeeze(1)
        lo, hi, lower = lo[keep], hi[keep], b.lower[keep]
        if keep.numel() == 0:
            return proved, _Boxes(lo, hi, margin[keep], keep), None
        intervals = [(lo_[keep], up_[keep]) for lo_, up_ in b.intervals]
        # two coefficient rows per box: the best row of the worst clause (its minimizing
        # corner is the candidate counterexample) and the sum of the best rows of the
        # open clauses (it picks the split): one row > 0 excludes a clause
        A = torch.stack(target_rows(lower, clause, n_clauses), 1).to(lo.dtype)
        coef = _input_coefficients(graph, A, intervals)
        flo, fhi = lo.flatten(1), hi.flatten(1)
        corner = torch.where(coef[:, 0] > 0, flo, fhi)
        hit = self.check(torch.cat([(flo + fhi) / 2, corner]).to(F64))
        dim = (coef[:, 1].abs() * (fhi - flo)).argmax(1)
        return proved, _Boxes(lo, hi, margin[keep], dim), hit

    def _exact_leaves(self, lo: Tensor, hi: Tensor, intervals, proved: Tensor):
        """Decide the open boxes with few unstable ReLUs exactly, marking them in ``proved``
        (in place); a counterexample ends it and is returned (else None)."""
        # (nearly) linear regions are decided by an LP (a MILP with a binary per
        # unstable ReLU) instead of being split forever near a tie
        # (at most a quarter of the time, so that splitting goes on where CROWN
        # would prove the box cheaply)
        deadline, leaves = self.deadline, self.budget
        lin = ~proved & (unstable_count(self.graph, intervals) <= leaves.unstable)
        for i in lin.nonzero().squeeze(1).tolist():
            now = time.monotonic()
            if now > deadline.at or not leaves.open(now):
                break
            verdict, x = self.exact_leaf(lo[i:i + 1], hi[i:i + 1], deadline.at - now)
            leaves.record(time.monotonic() - now)
            if verdict == "sat":
                return x
            proved[i] = True  # decided: unsat, or left open as a near-tie
            self.undecided += verdict != "unsat"
        return None


def _split_candidates(par: _Boxes, root_width: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The children of the boxes ``par`` to bound: (lows, highs, the boxes that try the
    widest dimension too).

    Each box gets the split its bound suggests and, when that dimension lags far behind
    the box's widest one (relative to the root box), the widest one too: a dimension can
    look flat to the linear bound and still keep ReLUs unstable. Both are bounded; the
    one whose worse child is better is kept (:func:`_keep_better`).
    """
    rel = (par.hi - par.lo).flatten(1) / root_width
    widest = rel.argmax(1)
    alt = (widest != par.dim) & (rel.gather(1, widest[:, None]) > LAG
                                  * rel.gather(1, par.dim[:, None])).squeeze(1)
    lo, hi = _children(par.lo, par.hi, par.dim)
    ia = alt.nonzero().squeeze(1)
    if ia.numel():
        lo2, hi2 = _children(par.lo[ia], par.hi[ia], widest[ia])
        lo, hi = torch.cat([lo, lo2]), torch.cat([hi, hi2])
    return lo, hi, ia


def _keep_better(n: int, ia: Tensor, proved: Tensor, kids: _Boxes) -> tuple[int, _Boxes]:
    """Of the children of ``n`` parents (:func:`_split_candidates`), those of the candidate
    split whose worse child is better: (the number of them proved, the open ones)."""
    # per child: its parent, its candidate (0: suggested, 1: widest), its margin
    a, dev = ia.numel(), proved.device
    ia = ia.to(dev)
    parent = torch.cat([torch.arange(n, device=dev), torch.arange(n, device=dev), ia, ia])
    cand = torch.cat([torch.zeros(2 * n, dtype=torch.long, device=dev),
                      torch.ones(2 * a, dtype=torch.long, device=dev)])
    score = torch.full((proved.shape[0],), float("inf"), dtype=kids.margin.dtype, device=dev)
    score[~proved] = kids.margin
    # the worse child of each (parent, candidate); -inf for a candidate not tried
    worse = torch.full((2 * n,), float("-inf"), dtype=score.dtype, device=dev).scatter_reduce(
        0, parent * 2 + cand, score, "amin", include_self=False).view(n, 2)
    choose = (worse[:, 1] > worse[:, 0]).long()
    chosen = cand == choose[parent]
    keep_open = chosen[~proved]
    return int((proved & chosen).sum()), _Boxes(
        kids.lo[keep_open], kids.hi[keep_open], kids.margin[keep_open], kids.dim[keep_open])


LAG = 16.0  # relative-width ratio beyond which the widest dimension is tried too
