"""Branch and bound over the signs of difference neurons: an anytime upper bound of
``sup F_j(x') - F_j(x)`` (GROCKET, Sec. III-E).

A domain restricts the signs of some pre-activation differences ``dy`` (``dy <= 0`` or
``dy >= 0``). On it each split difference ReLU gets the lines of its half (Fig. 2: the
lower-left or the upper-right part), and the split constraints enter the bound through
beta-CROWN's multipliers (Eq. 11: the engine's :mod:`verifriend.bounds.beta_crown`, with
its alpha slopes, on the difference network). The certificate is the largest bound over
the leaves, so the worst leaves are split first, a batch at a time; each child keeps the
smaller of its own bound and its parent's (both are sound on it). A leaf whose bound is at
or below the attack's lower bound cannot hold the supremum and is dropped; when none is
left, the supremum equals the attack's value.

Branching: the neuron whose relaxation costs the leaf's bound most, ``|a| * gap`` with
``a`` the neuron's coefficient in the leaf's bound and ``gap`` the offset of the line it
uses at ``dy = 0`` (the point both children make exact): BaBSR's intercept score
(Bunel et al., JMLR 2020) for the difference ReLU.

Every value reported is a bound computed in the problem's dtype (float64 by default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifriend.bounds.beta_crown import beta_crown, relu_output_coefficients
from verifriend.bounds.crown import DEFAULT_MAX_ELEMENTS
from verifriend.bounds.graph import Graph
from verifriend.bounds.ops.diff_relu import diff_relu_lines, feasible_range
from verifriend.bounds.optimizer import OptState, prepare_problem
from verifriend.bounds.splits import Splits, cat
from verifriend.deadline import Deadline, DeadlineExpired
from verifriend.globalrob.difference import GlobalProblem, alpha_certificate
from verifriend.verify.branching import branch, top_candidates


@dataclass(frozen=True)
class GlobalBabSettings:
    """``batch`` leaves split per step; ``iterations`` beta-CROWN steps per batch (learning
    rates ``lr_alpha``, ``lr_beta``); ``root_iterations`` alpha-CROWN steps at the root;
    ``max_leaves`` stops splitting when the leaves would exceed it (memory);
    ``max_domains`` stops after bounding that many domains (None: until the deadline)."""

    batch: int = 32
    iterations: int = 10
    root_iterations: int = 20
    lr_alpha: float = 0.1
    lr_beta: float = 0.05
    max_leaves: int = 100_000
    max_domains: int | None = None


@dataclass
class GlobalBabResult:
    """``bound``: the certified upper bound of ``sup F_j(x') - F_j(x)``; ``root``: the
    alpha-CROWN bound at the root; ``domains``: domains bounded; ``leaves``: open leaves
    at the end; ``exhausted``: no leaf above the floor is left (``bound`` = floor);
    ``trace``: (seconds, bound, domains) at each improvement."""

    bound: float
    root: float
    domains: int
    leaves: int
    exhausted: bool
    trace: list[tuple[float, float, int]] = field(default_factory=list)


@dataclass
class _Leaves:
    splits: Splits
    ub: Tensor  # (N,)
    alphas: dict[int, Tensor]  # (N, 1, *shape), float32
    betas: dict[int, Tensor]
    final: Tensor  # (N,) bool: nothing left to split

    def __len__(self) -> int:
        return self.ub.numel()

    def take(self, idx: Tensor) -> _Leaves:
        return _Leaves(self.splits.select(idx), self.ub[idx],
                       {r: a[idx] for r, a in self.alphas.items()},
                       {r: b[idx] for r, b in self.betas.items()}, self.final[idx])

    def state(self) -> OptState:
        return OptState(dict(self.alphas), dict(self.betas))


def _join(a: _Leaves, b: _Leaves) -> _Leaves:
    return _Leaves(cat([a.splits, b.splits]), torch.cat([a.ub, b.ub]),
                   {r: torch.cat([a.alphas[r], b.alphas[r]]) for r in a.alphas},
                   {r: torch.cat([a.betas[r], b.betas[r]]) for r in a.betas},
                   torch.cat([a.final, b.final]))


def _store(graph: Graph, state: OptState) -> tuple[dict, dict]:
    """A state's alphas and betas for every difference ReLU (zero betas where none was
    split), as float32: leaves of different batches concatenate."""
    alphas = {r: state.alphas[r].float() for r in graph.relu_nodes()}
    betas = {r: (state.betas[r].float() if r in state.betas else torch.zeros_like(alphas[r]))
             for r in graph.relu_nodes()}
    return alphas, betas


def branching_scores(graph: Graph, intervals, coefs: dict[int, Tensor], splits: Splits
                     ) -> dict[int, Tensor]:
    """Per difference ReLU, (D, n) scores ``|a| * gap`` (module doc); -inf where the sign
    is split or cannot change."""
    scores = {}
    for r in graph.relu_nodes():
        node = graph.nodes[r]
        l, u = intervals[node.inputs[0]]
        lo, hi = feasible_range(l, u, node.y_lower, node.y_upper)
        free = (lo < 0) & (hi > 0) & (splits.signs[r] == 0)
        _, d, _, c = diff_relu_lines(l, u, node.y_lower, node.y_upper)
        a = coefs.get(r)
        a = torch.zeros_like(l) if a is None else a.expand(l.shape[0], -1, *l.shape[1:]).sum(1)
        gap = torch.where(a < 0, c, -d)
        score = a.abs() * gap + 1e-9 * (hi - lo)  # tie-break: the wider neuron
        scores[r] = torch.where(free, score, float("-inf")).flatten(1)
    return scores


def global_bab(problem: GlobalProblem, output: int, floor: float = -math.inf,
               deadline: Deadline | None = None,
               settings: GlobalBabSettings = GlobalBabSettings(),
               on_improve: Callable[[float, float, int], None] | None = None) -> GlobalBabResult:
    """The anytime certified bound of ``sup F_output(x') - F_output(x)``; ``floor`` is a
    known lower bound (the attack's), ``on_improve(seconds, bound, domains)`` is called
    whenever the bound improves. Returns at ``deadline`` with the best bound so far."""
    start = time.monotonic()
    deadline = deadline or Deadline.never()
    trace: list[tuple[float, float, int]] = []

    def report(bound: float, domains: int) -> None:
        trace.append((time.monotonic() - start, bound, domains))
        if on_improve is not None:
            on_improve(*trace[-1])

    try:
        root = _root(problem, output, settings, deadline)
    except DeadlineExpired:  # no bound in time: nothing certified beyond the floor's caller
        return GlobalBabResult(math.inf, math.inf, 0, 0, False, trace)
    root_ub, bounds, state = root
    root = float(root_ub[0])
    best = max(root, floor)
    report(best, 1)
    dgraph = problem.difference_graph().with_output_map(
        problem.rows([output])[0], torch.zeros(1, dtype=root_ub.dtype, device=root_ub.device))
    dlo, dhi = problem.difference_box()
    root_iv = bounds.intervals
    alphas, betas = _store(dgraph, state)
    leaves = _Leaves(Splits.empty(dgraph, 1, dlo.device), root_ub.clone(), alphas, betas,
                     torch.zeros(1, dtype=torch.bool, device=dlo.device))
    domains = 1
    while not deadline.expired():
        open_ = (leaves.ub > floor) & ~leaves.final
        if not bool(open_.any()) or len(leaves) + settings.batch > settings.max_leaves:
            break
        if settings.max_domains is not None and domains >= settings.max_domains:
            break
        k = min(settings.batch, int(open_.sum()))
        pick = torch.where(open_, leaves.ub, -math.inf).topk(k).indices
        rest = torch.ones(len(leaves), dtype=torch.bool, device=pick.device)
        rest[pick] = False
        try:
            kids = _split(dgraph, dlo, dhi, root_iv, leaves.take(pick), settings, deadline)
        except DeadlineExpired:
            break
        domains += len(kids) if kids is not None else 0
        cur = leaves.take(rest.nonzero().squeeze(1))
        leaves = cur if kids is None else _join(cur, kids.take((kids.ub > floor).nonzero()
                                                               .squeeze(1)))
        top = float(leaves.ub.max()) if len(leaves) else -math.inf
        if max(top, floor) < best:
            best = max(top, floor)
            report(best, domains)
    exhausted = not bool((leaves.ub > floor).any())
    return GlobalBabResult(best, root, domains, len(leaves), exhausted, trace)


def _root(problem: GlobalProblem, output: int, settings: GlobalBabSettings,
          deadline: Deadline):
    """alpha-CROWN at the root with a third of the time left; if that runs out, CROWN's
    slopes (no optimization), so that the search still gets its share."""
    try:
        return alpha_certificate(problem, [output], settings.root_iterations,
                                 deadline=deadline.earlier(deadline.left() / 3))
    except DeadlineExpired:
        return alpha_certificate(problem, [output], 0, deadline=deadline)


def _split(dgraph: Graph, dlo: Tensor, dhi: Tensor, root_iv, cur: _Leaves,
           settings: GlobalBabSettings, deadline: Deadline) -> _Leaves | None:
    """Both children of every leaf of ``cur``, bounded; leaves with nothing left to split
    come back marked final."""
    D = len(cur)
    lo1, hi1 = dlo.expand(D, *dlo.shape[1:]), dhi.expand(D, *dhi.shape[1:])
    known = [(lo.expand(D, *lo.shape[1:]), up.expand(D, *up.shape[1:])) for lo, up in root_iv]
    p = prepare_problem(dgraph, lo1, hi1, None, cur.splits, False, DEFAULT_MAX_ELEMENTS,
                        known=known)
    state = cur.state()
    coefs = relu_output_coefficients(dgraph, lo1, hi1, cur.splits, state, p.intervals)
    nodes, neurons, best = top_candidates(branching_scores(dgraph, p.intervals, coefs,
                                                           cur.splits), 1)
    ok = torch.isfinite(best[:, 0])
    stuck = cur.take((~ok).nonzero().squeeze(1))
    stuck.final[:] = True
    idx = ok.nonzero().squeeze(1)
    if idx.numel() == 0:
        return stuck
    cur = cur.take(idx)
    D = len(cur)
    kids, parent = branch(cur.splits, torch.arange(D, device=dlo.device), nodes[idx, 0],
                          neurons[idx, 0])
    lo2, hi2 = dlo.expand(2 * D, *dlo.shape[1:]), dhi.expand(2 * D, *dhi.shape[1:])
    known2 = [(lo.expand(2 * D, *lo.shape[1:]), up.expand(2 * D, *up.shape[1:]))
              for lo, up in root_iv]
    b, st = beta_crown(dgraph, lo2, hi2, None, kids, warm_start=cur.state(), parent=parent,
                       iterations=settings.iterations, lr=settings.lr_alpha,
                       lr_beta=settings.lr_beta, intermediate=False, intervals=known2,
                       deadline=deadline)
    ub = torch.minimum(-b.lower[:, 0], cur.ub[parent])  # +inf lower: an empty child
    alphas, betas = _store(dgraph, st)
    out = _Leaves(kids, ub, alphas, betas, torch.zeros(2 * D, dtype=torch.bool, device=ub.device))
    return _join(out, stuck) if len(stuck) else out
