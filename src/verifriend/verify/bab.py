"""Branch and bound over ReLU splits, bounded by beta-CROWN in batches.

Bunel, Lu, Turkaslan, Torr, Kohli, Kumar, "Branch and Bound for Piecewise Linear Neural
Network Verification", JMLR 2020; batched beta-CROWN bounding as in Wang et al., NeurIPS 2021.

The problem is a graph whose outputs are the spec rows (``Graph.with_output_map``):
a domain is proved when every clause has a row with a positive lower bound. The
pool holds the undecided domains as plain tensors. Each step takes the batch of
domains with the worst clause margin, picks one unstable ReLU per domain
(``branching.choose``), bounds both children in one vectorized beta-CROWN call
warm-started from the parent's alphas and betas, confirms every child that looks
proved by recomputing its bound in float64 (the soundness gate), and puts the
rest back. A domain whose unstable neurons are all split is decided exactly by
an LP over its linear region (HiGHS), so the search ends with the right answer
given time. The batch grows from 8 while the time per domain holds (``_BatchSizer``);
out of memory halves it and retries.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.beta_crown import beta_crown, relu_output_coefficients
from verifriend.bounds.confirm import proof_holds
from verifriend.bounds.crown import crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.optimizer import OptState
from verifriend.bounds.relax import Interval
from verifriend.bounds.splits import Splits
from verifriend.deadline import Deadline, DeadlineExpired
from verifriend.verify.bab_budget import BatchSizer, CandidateAttack, LeafBudget
from verifriend.verify.bab_config import BabConfig
from verifriend.verify.branching import branch, choose, split_costs


@dataclass
class BabOutcome:
    """``status`` "unsat" (every leaf confirmed), "sat" (``x`` reaches the unsafe region
    in float64), "timeout" or "unknown"; ``domains`` bounded; ``leaves`` confirmed."""

    status: str
    domains: int
    leaves: int
    x: Tensor | None = None


@dataclass
class _Pool:
    splits: Splits
    lower: Tensor  # (D, m)
    intervals: list[Interval]  # every node, (D, ...)
    state: OptState

    def __len__(self) -> int:
        return self.lower.shape[0]

    def take(self, idx: Tensor) -> _Pool:
        return _Pool(
            self.splits.select(idx),
            self.lower[idx],
            [(lo[idx], up[idx]) for lo, up in self.intervals],
            self.state.select(idx),
        )


def _cat_pools(a: _Pool | None, b: _Pool) -> _Pool:
    if a is None or len(a) == 0:
        return b
    return _Pool(
        Splits({r: torch.cat([a.splits.signs[r], b.splits.signs[r]]) for r in a.splits.signs}),
        torch.cat([a.lower, b.lower]),
        [(torch.cat([x[0], y[0]]), torch.cat([x[1], y[1]])) for x, y in zip(a.intervals, b.intervals)],
        dataclasses.replace(
            a.state,
            alphas={r: torch.cat([a.state.alphas[r], b.state.alphas[r]]) for r in a.state.alphas},
            betas={r: torch.cat([a.state.betas[r], b.state.betas[r]]) for r in a.state.betas},
            gammas={r: torch.cat([a.state.gammas[r], b.state.gammas[r]])
                    for r in a.state.gammas},
            rows={}, inner={},
        ),
    )


def clause_margin(lower: Tensor, clause: Tensor, n_clauses: int) -> Tensor:
    """(N,) the worst clause's best row bound: > 0 exactly when the domain is proved."""
    per = torch.full((lower.shape[0], n_clauses), float("-inf"), dtype=lower.dtype,
                     device=lower.device)
    per = per.scatter_reduce(1, clause.to(lower.device).expand_as(lower), lower, "amax")
    return per.amin(1)


def target_rows(lower: Tensor, clause: Tensor, n_clauses: int) -> tuple[Tensor, Tensor]:
    """One-hot (D, m) of the best row of the worst clause, and the (D, m) indicator of
    the best row of every clause not yet excluded."""
    D, m = lower.shape
    dev = lower.device
    clause = clause.to(dev)
    ar = torch.arange(D, device=dev)
    best_row = torch.empty(D, n_clauses, dtype=torch.long, device=dev)
    best_val = torch.empty(D, n_clauses, dtype=lower.dtype, device=dev)
    for j in range(n_clauses):
        idx = (clause == j).nonzero().squeeze(1)
        val, k = lower[:, idx].max(1)
        best_row[:, j], best_val[:, j] = idx[k], val
    worst = torch.zeros(D, m, dtype=torch.bool, device=dev)
    worst[ar, best_row[ar, best_val.argmin(1)]] = True
    open_best = torch.zeros(D, m, dtype=torch.bool, device=dev)
    for j in range(n_clauses):
        open_best[ar, best_row[:, j]] |= best_val[:, j] <= 0
    return worst, open_best


def _full_betas(graph: Graph, state: OptState, D: int) -> OptState:
    """A state whose betas cover every ReLU node (zeros where none was split yet), so
    states of different batches concatenate."""
    betas = dict(state.betas)
    S = next(iter(state.alphas.values())).shape[1]
    for r in graph.relu_nodes():
        if r not in betas:
            a = state.alphas[r]
            betas[r] = a.new_zeros(D, S, *a.shape[2:])
    return dataclasses.replace(state, betas=betas, rows={}, inner={})


def relu_bab(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    clause: Tensor,
    root_lower: Tensor,
    root_intervals: list[Interval],
    root_state: OptState,
    *,
    deadline: Deadline,
    config: BabConfig | None = None,
    exact_leaf=None,
    on_progress=None,
    root_intervals64: list[Interval] | None = None,
    attack=None,
) -> BabOutcome:
    """Branch and bound on one input box (``x_lower``/``x_upper`` of batch 1).

    ``clause`` (m,) maps each output row of ``graph`` to its clause. The root's
    bounds, node intervals and alpha state come from the incomplete stage.
    ``exact_leaf(splits, seconds) -> ("unsat" | "sat" | "unknown", x)`` decides a
    domain exactly within ``seconds`` (None: no limit): an LP over its region when every
    unstable neuron is split, a small MILP for domains chosen by :class:`LeafBudget`. ``on_progress(domains, pool size,
    worst margin)`` is called after every step. ``root_intervals64`` are the root's
    node bounds recomputed in float64 the way ``root_intervals`` were found (e.g.
    ``confirm_bound(...).intervals`` of the alpha state); default: CROWN in float64.
    Children's float64 confirmations derive their intermediate bounds from them.
    ``attack(xs, steps) -> (x, y) | None`` checks candidate inputs xs (K, ...) in float64
    and, with ``steps`` > 0, runs that many PGD steps from them: each step's domains give
    the corners minimizing their bounds, all checked, the worst few attacked within
    ``ATTACK_SHARE`` of the time. ``deadline`` is checked between steps and inside every
    bound computation; past it the outcome is "timeout".
    """
    config = config or BabConfig()
    config.check()
    n_clauses = int(clause.max()) + 1 if clause.numel() else 0

    def margin(lower: Tensor) -> Tensor:
        return clause_margin(lower, clause, n_clauses)

    splits = Splits.empty(graph, 1, device=x_lower.device)
    # every proof is confirmed in float64 on intermediate bounds derived, like the
    # float32 ones, from the root's bounds (recomputed in float64)
    root64 = root_intervals64
    if root64 is None:
        try:
            with torch.no_grad():
                root64 = crown_intervals(graph.to(dtype=torch.float64), x_lower.double(),
                                         x_upper.double(), deadline=deadline)
        except DeadlineExpired:
            return BabOutcome("timeout", 0, 0)
    pool = _Pool(splits, root_lower, root_intervals, _full_betas(graph, root_state, 1))
    return _search(graph, x_lower, x_upper, clause, margin, pool, root64, config, exact_leaf,
                   attack, on_progress, deadline)


def _search(graph, x_lower, x_upper, clause, margin, pool: _Pool | None, root64,
            config: BabConfig, exact_leaf, attack, on_progress,
            deadline: Deadline) -> BabOutcome:
    """The loop of :func:`relu_bab` from the root ``pool``: each step splits the batch of
    domains with the worst margins (:func:`_step`) and puts the open children back."""
    domains = leaves = undecided = 0
    leaf_budget = LeafBudget(config.exact_unstable, floor=config.exact_unstable)
    candidates = None if attack is None else CandidateAttack(attack)
    sizer = BatchSizer(config.batch)
    while pool is not None and len(pool):
        now = time.monotonic()
        if now > deadline.at or (sizer.rate is not None and deadline.at - now < sizer.rate):
            # (a step of even one domain would end after the deadline)
            return BabOutcome("timeout", domains, leaves)
        if domains >= config.max_domains:
            return BabOutcome("unknown", domains, leaves)
        order = margin(pool.lower).argsort()
        n = sizer.size(deadline.at - now)
        take, rest = order[:n], order[n:]
        cur, pool = pool.take(take), (pool.take(rest) if rest.numel() else None)
        try:
            kids, kid_pool, n_exact, n_open = _step(graph, x_lower, x_upper, cur, margin,
                                                     config, exact_leaf, root64, leaf_budget,
                                                     deadline, clause, candidates)
        except DeadlineExpired:
            return BabOutcome("timeout", domains, leaves)
        except torch.OutOfMemoryError:
            if n == 1:
                raise
            sizer.out_of_memory(n)
            pool = _cat_pools(pool, cur)
            continue
        sizer.record(len(cur), time.monotonic() - now)
        domains += kids
        undecided += n_open
        if isinstance(kid_pool, BabOutcome):  # an exact leaf found a counterexample
            kid_pool.domains, kid_pool.leaves = domains, leaves
            return kid_pool
        leaves += n_exact
        leaves_proved, kid_pool = kid_pool
        leaves += leaves_proved
        if kid_pool is not None:
            pool = _cat_pools(pool, kid_pool)
        if on_progress is not None:
            worst = float(margin(pool.lower).min()) if pool is not None and len(pool) else 0.0
            on_progress(domains, 0 if pool is None else len(pool), worst)
    # a leaf the LP could not decide (a near-tie) leaves the answer open
    return BabOutcome("unknown" if undecided else "unsat", domains, leaves)


def _minimizers(coef: Tensor, lo: Tensor, hi: Tensor, lower: Tensor, clause: Tensor) -> Tensor:
    """(D, *input shape) per domain, the box corner minimizing the linear lower bound of
    the best row of its worst clause (``coef`` (D or 1, m, *input shape) the rows' input
    coefficients): where the bound says a counterexample is most likely."""
    D = lower.shape[0]
    worst, _ = target_rows(lower, clause, int(clause.max()) + 1)
    a = (coef.expand(D, *coef.shape[1:]).flatten(2) * worst.unsqueeze(-1).to(coef.dtype)).sum(1)
    return torch.where(a > 0, lo.flatten(1), hi.flatten(1)).view_as(lo)


def _child_state(graph, cur: _Pool, coefs: dict[int, Tensor], nodes, neurons,
                 parent) -> OptState:
    """The children's warm start: the parent's alphas and betas, and for the new split a
    beta that gives the child the parent's linear bound (at zero, a child's bound is often
    worse than its parent's, and a few beta steps do not make up for it). ``coefs`` are
    the parents' :func:`relu_output_coefficients`.

    With coefficient ``a > 0`` on the split ReLU's output the parent's bound holds the
    lower line ``a * alpha * z``; the ``z >= 0`` child's term ``(a - beta) z`` equals it at
    ``beta = a (1 - alpha)``, the ``z <= 0`` child's ``beta z`` at ``beta = a alpha``.
    (``a < 0`` would need a negative beta: it stays 0.)
    """
    D = len(cur)
    warm = cur.state.select(parent)
    betas = dict(warm.betas)
    ar = torch.arange(D, device=nodes.device)
    for r in set(nodes.tolist()):
        if r not in coefs:
            continue
        pick = ar[nodes == r]
        idx = neurons[pick]
        S = warm.alphas[r].shape[1]
        a = coefs[r].expand(D, S, *coefs[r].shape[2:]).flatten(2)[pick, :, idx].clamp(min=0)
        alpha = cur.state.alphas[r].flatten(2)[pick, :, idx]
        lo_r = cur.intervals[graph.nodes[r].inputs[0]][0].flatten(1)[pick, idx]
        a = torch.where((lo_r < 0).unsqueeze(1), a, 0.0)  # only where the parent relaxed it
        flat = betas[r].flatten(2).clone()
        flat[pick, :, idx] = a * alpha  # z <= 0 children come first
        flat[pick + D, :, idx] = a * (1 - alpha)
        betas[r] = flat.view_as(betas[r])
    return dataclasses.replace(warm, betas=betas)


def unstable_count(graph: Graph, intervals: list[Interval]) -> Tensor:
    """(D,) the number of unstable ReLUs (pre-activation bounds straddling 0) per domain."""
    n = torch.zeros(intervals[0][0].shape[0], dtype=torch.long, device=intervals[0][0].device)
    for r in graph.relu_nodes():
        lo, up = intervals[graph.nodes[r].inputs[0]]
        n += ((lo < 0) & (up > 0)).flatten(1).sum(1)
    return n


def _confirmed(graph, lo2, hi2, kids: Splits, lower: Tensor, state: OptState, margin,
               root_intervals64, recomputed: bool, deadline) -> Tensor:
    """(N,) the children proved: the soundness gate, a child counts as proved only if its
    bound recomputed in float64 agrees (empty domains too: float64 must find them empty as
    well). Recomputed children get every layer recomputed from the root's bounds."""
    proved = margin(lower) > 0
    if bool(proved.any()):
        check = proved.nonzero().squeeze(1)
        n = check.numel()
        root64 = [(lo.expand(n, *lo.shape[1:]), up.expand(n, *up.shape[1:]))
                  for lo, up in root_intervals64]
        holds = proof_holds(graph, lo2[check], hi2[check], None, state.select(check),
                            kids.select(check), intervals=root64, deadline=deadline,
                            refine_from=1 if recomputed else None)
        lower64 = torch.where(holds, 1.0, -1.0).to(lower.dtype)
        proved[check] = margin(lower64) > 0
    return proved


def _step(graph, x_lower, x_upper, cur: _Pool, margin, config: BabConfig, exact_leaf,
          root_intervals64, leaves: LeafBudget | None = None, deadline=None, clause=None,
          attack=None):
    """Split and bound one batch: returns (children bounded, result, exact leaves decided,
    exact leaves left undecided). ``attack(xs)`` tries the minimizers of the batch's
    bounds as counterexamples (``(x, y)`` or None)."""
    D = len(cur)
    rows = (cur.lower <= 0).to(cur.lower.dtype)
    lo1, hi1 = x_lower.expand(D, *x_lower.shape[1:]), x_upper.expand(D, *x_upper.shape[1:])
    costs = split_costs(graph, cur.intervals, rows.shape[1]) if config.cab else None
    nodes, neurons, ok = choose(graph, lo1, hi1, cur.intervals, rows, cur.splits, margin,
                                method=config.branching, candidates=config.fsb_candidates,
                                state=cur.state, costs=costs)
    n_exact = n_open = 0
    full = ~ok  # every unstable neuron split
    if exact_leaf is not None and leaves is not None and leaves.open(time.monotonic()):
        # a domain with only a few unstable neurons left is decided by a small MILP
        ok = ok & (unstable_count(graph, cur.intervals) > leaves.unstable)
    if not bool(ok.all()):
        # no unstable neuron left to split: the relaxation is exact up to the
        # optimizer, so an LP over the domain's region decides it
        for i in (~ok).nonzero().squeeze(1).tolist():
            t0 = time.monotonic()
            if exact_leaf is None or (deadline is not None and t0 > deadline.at):
                n_open += 1  # no exact leaf, or out of time: the domain stays undecided
                continue
            left = None if deadline is None else deadline.at - t0
            verdict, x = exact_leaf(cur.splits.select(torch.tensor([i])), left)
            if leaves is not None:
                leaves.record(time.monotonic() - t0, early=not bool(full[i]))
            if verdict == "sat":
                return 0, BabOutcome("sat", 0, 0, x), 0, 0
            if verdict == "unsat":
                n_exact += 1
            else:
                n_open += 1
        keep = ok.nonzero().squeeze(1)
        if keep.numel() == 0:
            return 0, (0, None), n_exact, n_open
        cur, nodes, neurons = cur.take(keep), nodes[keep], neurons[keep]
        D = len(cur)
    kids, parent = branch(cur.splits, torch.arange(D, device=nodes.device), nodes, neurons)
    lo2 = x_lower.expand(2 * D, *x_lower.shape[1:])
    hi2 = x_upper.expand(2 * D, *x_upper.shape[1:])
    coefs = relu_output_coefficients(graph, lo1[:D], hi1[:D], cur.splits, cur.state,
                                     cur.intervals)
    if attack is not None:
        hit = attack(_minimizers(coefs[0], lo1[:D], hi1[:D], cur.lower, clause))
        if hit is not None:
            return 0, BabOutcome("sat", 0, 0, hit), n_exact, n_open
    warm = _child_state(graph, cur, coefs, nodes, neurons, parent)
    # the layers up to the earliest split of the batch keep the parent's bounds (clamped)
    refine_from = int(nodes.min()) if config.recompute_intermediate else None
    b, state = beta_crown(
        graph, lo2, hi2, None, kids, warm_start=warm,
        iterations=config.iterations, lr=config.lr_alpha, lr_beta=config.lr_beta,
        lr_gamma=config.lr_gamma, intermediate=False,
        intervals=[(lo[parent], up[parent]) for lo, up in cur.intervals],
        refine_from=refine_from, deadline=deadline,
    )
    state = _full_betas(graph, state, 2 * D)
    proved = _confirmed(graph, lo2, hi2, kids, b.lower, state, margin, root_intervals64,
                        refine_from is not None, deadline)
    open_ = (~proved).nonzero().squeeze(1)
    n_proved = int(proved.sum())
    if open_.numel() == 0:
        return 2 * D, (n_proved, None), n_exact, n_open
    kid_pool = _Pool(
        kids.select(open_),
        b.lower[open_],
        [(lo[open_], up[open_]) for lo, up in b.intervals],
        state.select(open_),
    )
    return 2 * D, (n_proved, kid_pool), n_exact, n_open
