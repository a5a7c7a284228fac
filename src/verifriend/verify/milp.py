"""Exact MILP and LP-relaxation bounds of a ReLU network over an input box (HiGHS).

One domain of a graph becomes one HiGHS model: a continuous variable per neuron
of every node, equality rows for the affine nodes (Linear, Conv2d and AvgPool as
their dense matrices, Affine, Add; Flatten reuses its input's variables), a
big-M selection per MaxPool window (:mod:`verifriend.bounds.ops.pool`), and per ReLU
neuron with pre-activation bounds ``[l, u]`` (:mod:`verifriend.bounds.ops.relu`):

* ``l >= 0`` or split ``+1``: ``y = z`` (a split also adds ``z >= 0``);
* ``u <= 0`` or split ``-1``: ``y = 0`` (a split also adds ``z <= 0``);
* otherwise the big-M encoding of Tjeng et al. (2019) with one binary ``a``:
  ``y >= 0, y >= z, y <= z - l (1 - a), y <= u a``. With ``relax=True`` ``a`` is
  continuous in ``[0, 1]``, and projecting ``a`` out leaves exactly the triangle
  relaxation, so the LP optimum is the best bound any single-neuron linear
  relaxation (optimal alpha-CROWN slopes) reaches with the same bounds.

The bounds ``[l, u]`` only shape the encoding; the MILP optimum is the exact
minimum for any sound bounds (up to HiGHS's feasibility tolerances, ~1e-6), and
tighter bounds make it faster. Every node's variables are also boxed by its
bounds, widened by a relative ``sqrt(eps)`` of their dtype so rounding in the
bound pass cannot cut off a feasible point.

Typical use::

    lower = milp_bounds(graph, x_lower, x_upper, C)                # exact (D, m)
    model = encode(graph, x_lower, x_upper, crown(graph, x_lower, x_upper).intervals)
    res = model.minimize(c_row, time_limit=60.0)                   # res.x: a minimizer
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import highspy
import numpy as np
import torch
from torch import Tensor

from verifriend.bounds.crown import crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import check_box, check_problem
from verifriend.bounds.ops import MilpStep
from verifriend.bounds.ops.milp_rows import INF, MilpRows, flat
from verifriend.bounds.splits import Splits
from verifriend.errors import UnsupportedLayerError, UserError

Interval = tuple[Tensor, Tensor]



@dataclass
class MilpResult:
    """One minimization of ``c . f(x)`` over a domain.

    ``status`` is "optimal", "infeasible", "time_limit" or "error" (HiGHS failed to
    solve it, even without presolve: nothing is known). ``value`` is the best
    objective found (+inf when none: infeasible, or no solution before the time
    limit); ``x`` (the input shape, no batch dim) attains it, or None. ``bound`` is a
    valid lower bound (HiGHS's dual bound; equals ``value`` at optimality, -inf
    when an LP stopped early, +inf when infeasible). ``time_s`` is solver time.
    """

    status: str
    value: float
    x: Tensor | None
    bound: float
    time_s: float


class MilpModel:
    """A HiGHS model of one domain; minimize any linear function of the output with it.

    Built by :func:`encode`. The model is reused between calls (an LP restarts
    from the previous basis), so bound several spec rows with one model.
    """

    def __init__(
        self,
        highs: highspy.Highs | None,
        input_cols: np.ndarray,
        output_cols: np.ndarray,
        x_lower: Tensor,
        x_upper: Tensor,
        relax: bool,
        num_binaries: int,
    ):
        self.highs = highs  # None: the domain is empty (crossed bounds)
        self.input_cols = input_cols
        self.output_cols = output_cols
        self.x_lower, self.x_upper = x_lower, x_upper  # (*input_shape), caller's dtype
        self.relax = relax
        self.num_binaries = num_binaries

    @property
    def num_outputs(self) -> int:
        return int(self.output_cols.size)

    def minimize(self, c: Tensor | np.ndarray, time_limit: float | None = None) -> MilpResult:
        """Minimize ``c . f(x)`` (``c`` has one entry per output) over the domain.

        ``time_limit`` is in seconds (None: no limit).
        """
        cost = np.asarray(torch.as_tensor(c).detach().cpu().double().reshape(-1))
        if cost.size != self.num_outputs:
            raise UserError(
                f"objective of {cost.size} entries does not match the "
                f"{self.num_outputs} outputs of the network."
            )
        if self.highs is None:
            return MilpResult("infeasible", math.inf, None, math.inf, 0.0)
        self.highs.changeColsCost(self.num_outputs, self.output_cols, cost)
        return self._solve(time_limit)

    def minimize_max(
        self, C: Tensor | np.ndarray, d: Tensor | np.ndarray, time_limit: float | None = None
    ) -> MilpResult:
        """Minimize ``max_r (C f(x) + d)_r`` over the domain (``C`` (k, n_out), ``d`` (k,)).

        The value is <= 0 iff some input satisfies every row ``C_r f(x) + d_r <= 0`` at once:
        the exact test of an AND-clause of a spec (one row: plain :meth:`minimize`).
        """
        C = np.asarray(torch.as_tensor(C).detach().cpu().double()).reshape(-1, self.num_outputs)
        d = np.asarray(torch.as_tensor(d).detach().cpu().double()).reshape(-1)
        if C.shape[0] != d.size or C.shape[0] == 0:
            raise UserError(f"minimize_max needs k >= 1 rows and k offsets, got {C.shape[0]}/{d.size}.")
        if self.highs is None:
            return MilpResult("infeasible", math.inf, None, math.inf, 0.0)
        h = self.highs
        k = C.shape[0]
        h.changeColsCost(self.num_outputs, self.output_cols, np.zeros(self.num_outputs))
        t = h.getNumCol()
        h.addCol(1.0, -INF, INF, 0, np.zeros(0, np.int32), np.zeros(0))
        first_row = h.getNumRow()
        # rows C_r y - t <= -d_r
        idx = np.concatenate([np.append(self.output_cols, t)] * k).astype(np.int32)
        val = np.concatenate([np.append(C[r], -1.0) for r in range(k)])
        starts = (np.arange(k) * (self.num_outputs + 1)).astype(np.int32)
        h.addRows(k, np.full(k, -INF), -d, idx.size, starts, idx, val)
        try:
            return self._solve(time_limit)
        finally:
            h.deleteRows(k, np.arange(first_row, first_row + k, dtype=np.int32))
            h.deleteCols(1, np.array([t], dtype=np.int32))

    def _solve(self, time_limit: float | None) -> MilpResult:
        if time_limit is not None and not time_limit > 0:
            raise UserError("time_limit must be positive (seconds) or None.")
        h = self.highs
        h.setOptionValue("time_limit", math.inf if time_limit is None else float(time_limit))
        start = time.perf_counter()
        h.run()
        elapsed = time.perf_counter() - start
        status = h.getModelStatus()
        S = highspy.HighsModelStatus
        if status in (S.kInfeasible, S.kUnboundedOrInfeasible, S.kSolveError):
            # HiGHS's presolve has been seen to call a feasible model with chains of
            # equalities infeasible; "infeasible" proves things, so it must be re-derived
            # without presolve before it is believed. A "solve error" (HiGHS 1.16 gives it
            # when its MIP answer violates a row by its own 1e-6 tolerance) is tried again
            # the same way
            left = None if time_limit is None else time_limit - elapsed
            if left is not None and left <= 0:
                return MilpResult("time_limit", math.inf, None, -math.inf, elapsed)
            h.setOptionValue("time_limit", math.inf if left is None else float(left))
            h.setOptionValue("presolve", "off")
            h.run()
            h.setOptionValue("presolve", "choose")
            elapsed = time.perf_counter() - start
            status = h.getModelStatus()
        if status in (S.kInfeasible, S.kUnboundedOrInfeasible):
            # the model is bounded (finite box), so "unbounded or infeasible" is infeasible
            return MilpResult("infeasible", math.inf, None, math.inf, elapsed)
        info = h.getInfo()
        mip = self.num_binaries > 0
        if status == S.kOptimal:
            value = info.objective_function_value
            bound = min(info.mip_dual_bound, value) if mip else value
            return MilpResult("optimal", value, self._point(), bound, elapsed)
        if status in (S.kTimeLimit, S.kInterrupt, S.kIterationLimit):
            found = mip and info.primal_solution_status == 2  # kSolutionStatusFeasible
            value = info.objective_function_value if found else math.inf
            bound = info.mip_dual_bound if mip else -math.inf
            if math.isnan(bound):
                bound = -math.inf
            return MilpResult("time_limit", value, self._point() if found else None, bound, elapsed)
        if status == S.kSolveError:
            # no answer to trust: undecided (no value, no point, no bound)
            return MilpResult("error", math.inf, None, -math.inf, elapsed)
        raise RuntimeError(f"HiGHS stopped with model status {h.modelStatusToString(status)}.")

    def _point(self) -> Tensor:
        col = np.asarray(self.highs.getSolution().col_value)[self.input_cols]
        x = torch.as_tensor(col, dtype=torch.float64).view(self.x_lower.shape)
        # the solver may overshoot the box by its feasibility tolerance
        x = torch.minimum(torch.maximum(x, self.x_lower.double()), self.x_upper.double())
        return x.to(self.x_lower.dtype)




def encodable(graph: Graph) -> bool:
    """Whether :func:`encode` has an exact encoding of every node of ``graph`` (e.g. not for
    sigmoid or tanh)."""
    return all(node.has_milp for node in graph.nodes)


def _check_encoding(graph: Graph, x_lower: Tensor, x_upper: Tensor, intervals: list[Interval],
                    splits: Splits | None, domain: int) -> None:
    """Raise :class:`UserError` (or :class:`UnsupportedLayerError`) unless :func:`encode`
    can encode domain ``domain`` of ``graph`` with these bounds and splits."""
    check_box(graph, x_lower, x_upper)
    D = x_lower.shape[0]
    if not 0 <= domain < D:
        raise UserError(f"domain {domain} is out of range for {D} domains.")
    if len(intervals) != len(graph.nodes):
        raise UserError(
            f"intervals hold {len(intervals)} nodes but the graph has {len(graph.nodes)}."
        )
    for j, (lo, _) in enumerate(intervals):
        if lo.shape[0] != D or tuple(lo.shape[1:]) != graph.nodes[j].shape:
            raise UserError(
                f"intervals of node {j} have shape {tuple(lo.shape)}; expected "
                f"{(D, *graph.nodes[j].shape)}."
            )
    if splits is not None:
        splits.check(graph, D)
    if not bool(torch.isfinite(x_lower[domain]).all() & torch.isfinite(x_upper[domain]).all()):
        raise UserError("the input box must be finite.")
    for node in graph.nodes:
        if not node.has_milp:
            raise UnsupportedLayerError(
                f"layer '{node.name}' ({node.kind}) has no MILP encoding; the MILP supports "
                "piecewise-linear networks (no sigmoid or tanh).")


def encode(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    intervals: list[Interval],
    splits: Splits | None = None,
    domain: int = 0,
    relax: bool = False,
) -> MilpModel:
    """The HiGHS model of domain ``domain`` of the network over ``[x_lower, x_upper]``.

    ``x_lower``/``x_upper`` are (D, *input_shape), ``intervals`` sound bounds of every
    node (D first, e.g. ``crown(...).intervals``), ``splits`` optional ReLU splits
    of the D domains. ``relax=True`` gives the LP (triangle) relaxation instead of
    the MILP. A domain whose bounds cross is empty: its model reports "infeasible".
    """
    _check_encoding(graph, x_lower, x_upper, intervals, splits, domain)
    g = graph.to(device="cpu", dtype=torch.float64)
    rel = math.sqrt(torch.finfo(intervals[0][0].dtype).eps)
    rows = MilpRows()
    bound_fix: list = []  # (cols, lower, upper) tightenings applied at the end
    cols, empty = add_network(rows, bound_fix, g, x_lower, x_upper, intervals,
                              splits, domain, rel, relax)
    if empty:
        highs, nbin = None, 0
    else:
        highs, nbin = rows.build(bound_fix)
    return MilpModel(
        highs,
        cols[0].astype(np.int32),
        cols[-1].astype(np.int32),
        x_lower[domain].detach().cpu(),
        x_upper[domain].detach().cpu(),
        relax,
        nbin,
    )


def add_network(rows: MilpRows, bound_fix: list, g: Graph, x_lower: Tensor, x_upper: Tensor,
                intervals: list[Interval], splits: Splits | None, domain: int, rel: float,
                relax: bool) -> tuple[list[np.ndarray], bool]:
    """Columns and rows of one copy of the network ``g`` (float64) on domain ``domain``:
    returns each node's columns and whether some bounds cross (the domain is empty). A
    twin network (:mod:`verifriend.globalrob.exact`) adds two copies to the same rows."""
    signs = {} if splits is None else splits.signs
    cols: list[np.ndarray] = []
    empty = False
    for j, node in enumerate(g.nodes):
        src = [cols[i] for i in node.inputs]
        alias = node.milp_columns(src)
        if alias is not None:
            cols.append(alias)
            continue
        if j == 0:
            lo, hi = flat(x_lower, domain), flat(x_upper, domain)
        else:
            lo, hi = flat(intervals[j][0], domain), flat(intervals[j][1], domain)
            # sound bounds computed in floating point: widen by their rounding
            lo, hi = lo - rel * (1 + np.abs(lo)), hi + rel * (1 + np.abs(hi))
        empty |= bool((lo > hi).any())
        out = rows.cols(lo, np.maximum(lo, hi))
        cols.append(out)
        if j == 0:
            continue
        step = MilpStep(rows, out, src,
                        [(flat(intervals[i][0], domain), flat(intervals[i][1], domain))
                         for i in node.inputs],
                        flat(signs[j], domain) if j in signs else None, rel, relax, bound_fix)
        node.milp(step)
        empty |= step.empty
    return cols, empty


def milp_bounds(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor | None,
    *,
    relax: bool = False,
    time_limit: float | None = None,
    splits: Splits | None = None,
) -> Tensor:
    """For every domain d and spec row i, the minimum of ``(C f(x))_i`` over box d (D, m).

    ``C`` is (D, m, n_out), (m, n_out) shared, or None (identity). The MILP gives the
    exact minimum; ``relax=True`` the LP (triangle relaxation) bound. Encodings use
    CROWN bounds computed in float64, with split pre-activations clamped as
    beta-CROWN does. ``time_limit`` caps each solve (one row of one domain); a row
    that runs out reports HiGHS's dual bound, which is still a valid lower bound.
    Empty domains (infeasible splits) get +inf. Returned in float64.
    """
    C = check_problem(graph, x_lower, x_upper, C)
    D = x_lower.shape[0]
    if splits is not None:
        splits.check(graph, D)
    g = graph.to(device="cpu", dtype=torch.float64)
    lo, hi = x_lower.detach().cpu().double(), x_upper.detach().cpu().double()
    tighten = splits.clamp_hook(g) if splits is not None else None
    with torch.no_grad():
        intervals = crown_intervals(g, lo, hi, tighten=tighten)
    C = C.detach().cpu().double()
    out = torch.empty(D, C.shape[1], dtype=torch.float64)
    for d in range(D):
        model = encode(g, lo, hi, intervals, splits, domain=d, relax=relax)
        for i in range(C.shape[1]):
            res = model.minimize(C[d if C.shape[0] > 1 else 0, i], time_limit)
            out[d, i] = res.value if res.status == "optimal" else res.bound
    return out.to(x_lower.device)


def milp_clause_minima(
    graph: Graph,
    x_lower: Tensor,
    x_upper: Tensor,
    C: Tensor,
    d: Tensor,
    clause: Tensor,
    *,
    time_limit: float | None = None,
) -> Tensor:
    """(n_clauses,) float64: for each clause j, the exact ``min_x max_{r in j} (C f(x) + d)_r``
    over the box (a batch of one), by MILP.

    A clause (an AND of its rows ``(C f(x) + d)_r <= 0``) is reachable iff its entry is
    <= 0, so a spec is proved iff every entry is > 0. Rows as from ``Spec.to_spec_matrix``.
    A solve that runs out of time reports HiGHS's dual bound (a valid lower bound).
    """
    g = graph.to(device="cpu", dtype=torch.float64)
    lo, hi = x_lower.detach().cpu().double(), x_upper.detach().cpu().double()
    check_problem(g, lo, hi, None)
    if lo.shape[0] != 1:
        raise UserError("milp_clause_minima takes one box (a batch of one).")
    with torch.no_grad():
        intervals = crown_intervals(g, lo, hi)
    model = encode(g, lo, hi, intervals, None, relax=False)
    n = int(clause.max()) + 1 if clause.numel() else 0
    out = torch.empty(n, dtype=torch.float64)
    for j in range(n):
        rows = clause == j
        res = model.minimize_max(C[rows], d[rows], time_limit)
        out[j] = res.value if res.status in ("optimal", "infeasible") else res.bound
    return out
