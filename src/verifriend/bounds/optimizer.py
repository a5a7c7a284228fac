"""The optimizer that alpha-CROWN and beta-CROWN share: back-substitution with optimized
slopes and multipliers (:mod:`verifriend.bounds.alpha_crown`, :mod:`verifriend.bounds.beta_crown`).

Both passes bound a batch of D domains (one input box each, optionally with ReLU
split constraints) in one vectorized call:

1. intermediate bounds are computed once per call by CROWN + IBP on the domain;
   split pre-activations are clamped (``z >= 0``: lower = max(lower, 0); ``z <= 0``:
   upper = min(upper, 0)) as soon as they are known, so a split neuron's relaxation
   is exact and later layers see the split domain;
2. the spec rows are back-substituted with **alpha**, the lower slope of every
   ReLU neuron, separately per domain and spec row, and **beta** >= 0, one Lagrange
   multiplier per split neuron and row: the term ``-beta * sign * z`` is added to
   the coefficients of the pre-activation ``z`` (beta-CROWN). Because
   ``sign * z >= 0`` on the domain, the term is <= 0 there, so every alpha in [0, 1]
   and beta >= 0 gives a sound lower bound;
3. alpha and beta are optimized by projected gradient ascent (Adam) on the sum of
   the concretized lower bounds; the best bound seen for each row is kept with the
   parameters that gave it (in ``OptState``, for warm starts and float64 confirmation).

With ``intermediate=True`` the bounds of every unstable intermediate neuron are
also recomputed at each step by back-substitution with their own alphas (one set
per intermediate neuron and bound side, for every earlier ReLU), optimized
jointly with the final ones through the final bound, as auto_LiRPA does. These
shared parameters tie a domain's rows together, so the state then keeps one
iterate per domain (the best sum of its rows), while each reported row is the
best over all iterates (every iterate is sound); ``confirm_bound`` recomputes
the state's bound, which can be looser on some rows. Without intermediate alphas
both are per row and agree. Results are intersected with CROWN's bound per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.adam import Adam
from verifriend.bounds.crown import DEFAULT_MAX_ELEMENTS, crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import check_problem, interval_pass, pre_relu_bounds, spec_interval
from verifriend.bounds.intermediate import (
    IntermediateRows,
    crown_slopes,
    inner_init,
    inner_intervals,
    plan_rows,
)
from verifriend.bounds.multineuron_terms import gamma_terms, initial_gammas
from verifriend.bounds.relax import Interval, backsubstitute, interval_rule
from verifriend.bounds.result import Bounds
from verifriend.bounds.splits import Splits
from verifriend.deadline import Deadline, StepClock
from verifriend.errors import UserError


@dataclass
class OptState:
    """Optimized parameters of a batch of D domains, keyed by ReLU node index.

    ``alphas[r]`` are lower slopes in [0, 1] and ``betas[r]`` split multipliers >= 0,
    both (D, S, *shape of node r) where S is the number of optimized rows: the m
    spec rows, followed by the m negated rows when ``bound_upper``.
    """

    alphas: dict[int, Tensor]
    betas: dict[int, Tensor]
    bound_upper: bool = False
    # intermediate=True only: per refined node t, its rows and per ReLU r < t the
    # alphas (D, 2k, *shape of r) of those rows
    rows: dict[int, IntermediateRows] = dataclasses.field(default_factory=dict)
    inner: dict[int, dict[int, Tensor]] = dataclasses.field(default_factory=dict)
    # multi-neuron constraints (MN-BaB): per ReLU node its rows (float64, shared by every
    # domain) and their multipliers gammas (D, S, R) >= 0
    mnc: dict = dataclasses.field(default_factory=dict)
    gammas: dict[int, Tensor] = dataclasses.field(default_factory=dict)

    def select(self, index: Tensor) -> OptState:
        """The state of domains ``index`` (e.g. each child's parent)."""
        return OptState(
            {r: a[index] for r, a in self.alphas.items()},
            {r: b[index] for r, b in self.betas.items()},
            self.bound_upper,
            {t: rw.select(index) for t, rw in self.rows.items()},
            {t: {r: a[index] for r, a in d.items()} for t, d in self.inner.items()},
            self.mnc,
            {r: g[index] for r, g in self.gammas.items()},
        )

    def to(self, dtype: torch.dtype) -> OptState:
        """A copy with every parameter cast to ``dtype``."""
        return dataclasses.replace(
            self,
            alphas={r: a.to(dtype) for r, a in self.alphas.items()},
            betas={r: b.to(dtype) for r, b in self.betas.items()},
            inner={t: {r: a.to(dtype) for r, a in d.items()} for t, d in self.inner.items()},
            gammas={r: g.to(dtype) for r, g in self.gammas.items()},
        )


@dataclass
class _Problem:
    """Everything fixed during the optimization of one batch of domains."""

    intervals: list[Interval]  # CROWN + IBP bounds of the domains, splits clamped
    base: list[Interval]
    C: Tensor  # (D or 1, m, n_out)
    rows: Tensor  # (D or 1, S, *output_shape)
    signs: dict[int, Tensor]  # ReLU node -> (D, 1, *shape) split signs as floats
    infeasible: Tensor  # (D,) bool
    tighten: Callable[[int, Interval], Interval] | None
    inner_rows: dict[int, IntermediateRows]
    deadline: Deadline | None = None  # checked between intermediate layers (both passes)
    mnc: dict = dataclasses.field(default_factory=dict)  # multi-neuron rows, problem dtype


def _empty_domains(intervals: list[Interval]) -> Tensor:
    """(D,) True where some node's bounds cross: the domain contains no input.

    A tolerance of sqrt(machine eps) (relative) keeps rounding in a feasible but
    degenerate domain from being taken for emptiness; calling an empty domain
    feasible is always sound, so erring this way only costs tightness.
    """
    lo0 = intervals[0][0]
    tol = torch.finfo(lo0.dtype).eps ** 0.5
    empty = torch.zeros(lo0.shape[0], dtype=torch.bool, device=lo0.device)
    for lo, up in intervals:
        scale = 1 + torch.maximum(lo.abs(), up.abs())
        empty |= ((lo - up) > tol * scale).flatten(1).any(1)
    return empty


def prepare_problem(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None,
    splits: Splits | None,
    bound_upper: bool,
    max_elements: int,
    inner_rows: dict[int, IntermediateRows] | None = None,
    known: list[Interval] | None = None,
    deadline: Deadline | None = None,
    refine_from: int | None = None,
) -> _Problem:
    C = check_problem(graph, x_lower, x_upper, C)
    D = x_lower.shape[0]
    if splits is not None:
        splits.check(graph, D)
    tighten = splits.clamp_hook(graph) if splits is not None else None
    with torch.no_grad():
        base = interval_pass(graph, x_lower, x_upper)
        if known is None or refine_from is not None:
            intervals = crown_intervals(
                graph, x_lower, x_upper, max_elements=max_elements, base=base, tighten=tighten,
                deadline=deadline, known=known, start=refine_from or 0,
            )
        else:
            intervals = _reuse_intervals(graph, known, tighten)
    rows = torch.cat([C, -C], 1) if bound_upper else C
    rows = rows.reshape(rows.shape[0], rows.shape[1], *graph.output_shape)
    signs = {}
    if splits is not None:
        signs = {
            r: s.to(x_lower.dtype).unsqueeze(1)
            for r, s in splits.signs.items()
            if bool(s.ne(0).any())
        }
    return _Problem(
        intervals, base, C, rows, signs, _empty_domains(intervals), tighten, inner_rows or {},
        deadline,
    )


def _reuse_intervals(graph: Graph, known: list[Interval], tighten) -> list[Interval]:
    """Node bounds from ``known`` ones (e.g. a parent domain's, valid on the sub-domain),
    with the splits clamped and the clamps carried forward by interval propagation."""
    ivs = [known[0]]
    for j, node in enumerate(graph.nodes[1:], 1):
        lo, up = interval_rule(node, [ivs[i] for i in node.inputs])
        lo, up = torch.maximum(lo, known[j][0]), torch.minimum(up, known[j][1])
        if tighten is not None:
            lo, up = tighten(j, (lo, up))
        ivs.append((lo, up))
    return ivs


def _initial_state(graph: Graph, p: _Problem, warm: OptState | None, bound_upper: bool):
    D, S = p.intervals[0][0].shape[0], p.rows.shape[1]
    if warm is not None and warm.bound_upper != bound_upper:
        raise UserError("the warm-start state was optimized with a different bound_upper.")
    alphas, betas = {}, {}
    gammas = initial_gammas(p.mnc, D, S, p.intervals[0][0],
                            None if warm is None else warm.gammas)
    for r in graph.relu_nodes():
        lo = p.intervals[graph.nodes[r].inputs[0]][0]
        shape = (D, S, *lo.shape[1:])
        if warm is not None and r in warm.alphas:
            if tuple(warm.alphas[r].shape) != shape:
                raise UserError(
                    f"the warm-start state has alphas of shape {tuple(warm.alphas[r].shape)} "
                    f"for ReLU node {r}; expected {shape} (one row per domain: pass parent=)."
                )
            alphas[r] = warm.alphas[r].to(lo.dtype).clone()
        else:
            alphas[r] = crown_slopes(graph, p.intervals, r, S)
        if r in p.signs:
            if warm is not None and r in warm.betas:
                betas[r] = warm.betas[r].to(lo.dtype).clone()
            else:
                betas[r] = lo.new_zeros(shape)
    # intermediate alphas always start from CROWN's: a parent's rows are other neurons
    inner = {t: inner_init(graph, p, t, rw) for t, rw in p.inner_rows.items()}
    return alphas, betas, inner, gammas


def problem_lower(
    graph: Graph, p: _Problem, alphas: dict, betas: dict, inner: dict | None = None,
    gammas: dict | None = None,
) -> Tensor:
    """Lower bounds (D, S) of the optimized rows for the given parameters."""
    intervals = inner_intervals(graph, p, inner) if inner else p.intervals
    terms = {r: -b * p.signs[r] for r, b in betas.items()}
    out_terms, const = None, None
    if gammas:
        out_terms, in_terms, const = gamma_terms(graph, p.mnc, gammas)
        for r, t in in_terms.items():
            terms[r] = terms[r] + t if r in terms else t
    lower = backsubstitute(
        graph, len(graph.nodes) - 1, p.rows, intervals, lower_slopes=alphas, input_terms=terms,
        output_terms=out_terms, deadline=p.deadline,
    )
    return lower if const is None else lower + const


def finish_bounds(
    graph: Graph,
    p: _Problem,
    lower_rows: Tensor,
    bound_upper: bool,
    method: str,
    inner: dict | None = None,
) -> Bounds:
    """Bounds from the optimized rows: CROWN and IBP intersection, empty domains.

    With ``inner`` (the intermediate alphas of the result) the reported node bounds
    are the optimized intermediate ones.
    """
    m = p.C.shape[1]
    last = len(graph.nodes) - 1
    with torch.no_grad():
        intervals = inner_intervals(graph, p, inner) if inner else p.intervals
        both = torch.cat([p.C, -p.C], 1).reshape(p.C.shape[0], 2 * m, *graph.output_shape)
        crown_rows = backsubstitute(graph, last, both, p.intervals)
        lower, upper = crown_rows[:, :m], -crown_rows[:, m:]
        lower = torch.maximum(lower, lower_rows[:, :m])
        if bound_upper:
            upper = torch.minimum(upper, -lower_rows[:, m:])
        for lo, up in (spec_interval(graph, intervals, p.C), spec_interval(graph, p.base, p.C)):
            lower, upper = torch.maximum(lower, lo), torch.minimum(upper, up)
        inf = torch.tensor(float("inf"), dtype=lower.dtype, device=lower.device)
        lower = torch.where(p.infeasible.unsqueeze(1), inf, lower)
        upper = torch.where(p.infeasible.unsqueeze(1), -inf, upper)
    return Bounds(lower, upper, pre_relu_bounds(graph, intervals), method, intervals)


def optimize_bounds(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None = None,
    splits: Splits | None = None,
    *,
    warm_start: OptState | None = None,
    iterations: int = 20,
    lr: float = 0.1,
    lr_beta: float | None = None,
    lr_decay: float = 0.98,
    patience: int = 10,
    tol: float = 0.0,
    bound_upper: bool = False,
    intermediate: bool = False,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    method: str = "alpha-crown",
    intervals: list[Interval] | None = None,
    deadline: Deadline | None = None,
    mnc: dict | None = None,
    lr_gamma: float = 0.01,
    refine_from: int | None = None,
) -> tuple[Bounds, OptState]:
    """The shared engine of :func:`alpha_crown` and :func:`beta_crown` (see those).

    ``deadline`` is checked in the CROWN pass, between the layers of the intermediate rows
    (in the forward and, through gradient hooks, the backward pass) and before every step;
    a step is not started when less than two of the slowest steps
    so far fit before it (one for the step, one for the float64 confirmation that a proof
    needs next, which costs about as much). Raises
    :class:`verifriend.deadline.DeadlineExpired`.

    ``mnc`` (default: the warm start's) are multi-neuron rows per ReLU node
    (:func:`verifriend.bounds.multineuron.build_rows`, valid on every domain): their
    multipliers gamma >= 0 are optimized with learning rate ``lr_gamma`` (MN-BaB).
    ``refine_from`` (with ``intervals``): CROWN recomputes the bounds of the nodes from
    this one on, intersected with ``intervals`` (see :func:`crown_intervals`)."""
    if iterations < 0:
        raise UserError("iterations must be >= 0.")
    p = prepare_problem(
        graph, x_lower, x_upper, C, splits, bound_upper, max_elements, known=intervals,
        deadline=deadline, refine_from=refine_from,
    )
    if intermediate and iterations:
        p.inner_rows = plan_rows(graph, p.intervals)
    mnc = mnc if mnc is not None else ({} if warm_start is None else warm_start.mnc)
    p.mnc = {r: nr.to(dtype=x_lower.dtype, device=x_lower.device) for r, nr in mnc.items()}
    alphas, betas, inner, gammas = _initial_state(graph, p, warm_start, bound_upper)
    inner_params = [a for d in inner.values() for a in d.values()]
    opt = _optimizer(alphas, betas, inner_params, iterations, lr, lr_beta, lr_decay,
                     gammas, lr_gamma)
    feasible = (~p.infeasible).to(x_lower.dtype).unsqueeze(1)
    best = _Best.start(alphas, betas, inner, gammas)
    clock = StepClock(deadline, reserve=1.0)
    for it in range(iterations + 1):
        clock.tick()  # stops before a step that would end after the deadline
        with torch.set_grad_enabled(opt is not None and it < iterations):
            lb = problem_lower(graph, p, alphas, betas, inner, gammas)
        with torch.no_grad():
            best.update(lb.detach(), alphas, betas, inner, feasible, tol, gammas)
        if it == iterations or opt is None or best.stalled >= patience:
            break
        # infeasible domains may hold meaningless values: keep them out of the gradient
        loss = -torch.nan_to_num(lb * feasible, posinf=0.0, neginf=0.0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():  # projection: every iterate stays sound
            for a in (*alphas.values(), *inner_params):
                a.clamp_(0.0, 1.0)
            for b in (*betas.values(), *gammas.values()):
                b.clamp_(min=0.0)
    bounds = finish_bounds(graph, p, best.lower, bound_upper, method, best.inner)
    state = OptState(best.alphas, best.betas, bound_upper, p.inner_rows, best.inner, mnc,
                     best.gammas)
    return bounds, state


def _optimizer(alphas: dict, betas: dict, inner_params: list[Tensor], iterations: int,
               lr: float, lr_beta: float | None, lr_decay: float, gammas: dict,
               lr_gamma: float) -> Adam | None:
    """Adam over every parameter (now requiring gradients); None when nothing is optimized."""
    params = [*alphas.values(), *betas.values(), *inner_params, *gammas.values()]
    for t in params:
        t.requires_grad_(True)
    groups = [([*alphas.values(), *inner_params], lr)]
    if betas:
        groups.append((list(betas.values()), lr if lr_beta is None else lr_beta))
    if gammas:
        groups.append((list(gammas.values()), lr_gamma))
    return Adam(groups, decay=lr_decay) if params and iterations else None


@dataclass
class _Best:
    """Each row's best bound (``lower``), the kept iterate's bound and parameters (per row,
    or per domain with intermediate alphas) and the steps ``stalled`` for early stopping."""

    alphas: dict[int, Tensor]
    betas: dict[int, Tensor]
    inner: dict[int, dict[int, Tensor]]
    gammas: dict[int, Tensor]
    lower: Tensor | None = None
    kept: Tensor | None = None
    stalled: int = 0
    last_total: float | None = None

    @classmethod
    def start(cls, alphas: dict, betas: dict, inner: dict, gammas: dict) -> _Best:
        return cls(
            {r: a.detach().clone() for r, a in alphas.items()},
            {r: b.detach().clone() for r, b in betas.items()},
            {t: {r: a.detach().clone() for r, a in d.items()} for t, d in inner.items()},
            {r: g.detach().clone() for r, g in gammas.items()},
        )

    def update(self, cur: Tensor, alphas: dict, betas: dict, inner: dict, feasible: Tensor,
               tol: float, gammas: dict) -> None:
        """Take in the bound ``cur`` (D, S) of the current parameters (under no_grad)."""
        if self.kept is None:
            improved = torch.ones_like(cur, dtype=torch.bool)
        elif inner:
            # shared intermediate alphas: keep whole domains, judged by their row sum
            improved = (cur.sum(1) > self.kept.sum(1)).unsqueeze(1).expand_as(cur)
        else:
            improved = cur > self.kept
        self.kept = cur.clone() if self.kept is None else torch.where(improved, cur, self.kept)
        # every iterate's bound is sound: report each row's best one
        self.lower = cur.clone() if self.lower is None else torch.maximum(self.lower, cur)
        for src, dst in ((alphas, self.alphas), (betas, self.betas), (gammas, self.gammas)):
            for r, v in src.items():
                mask = improved.view(*improved.shape, *([1] * (v.dim() - 2)))
                dst[r] = torch.where(mask, v.detach(), dst[r])
        dom = improved[:, 0]
        for t, d in inner.items():
            for r, v in d.items():
                mask = dom.view(-1, *([1] * (v.dim() - 1)))
                self.inner[t][r] = torch.where(mask, v.detach(), self.inner[t][r])
        # early stopping on the sum of the best bounds of feasible domains
        total = float(torch.nan_to_num(self.lower * feasible, posinf=0.0, neginf=0.0).sum())
        last = self.last_total
        if last is not None and total - last <= tol * (1 + abs(last)):
            self.stalled += 1
        else:
            self.stalled = 0
        self.last_total = total
