"""Exact MILP and LP-relaxation bounds of a ReLU network over an input box (HiGHS).

One domain of a graph becomes one HiGHS model: a continuous variable per neuron
of every node, equality rows for the affine nodes (Linear, Conv2d and AvgPool as
their dense matrices, Affine, Add; Flatten reuses its input's variables), a
big-M selection per MaxPool window (see ``_maxpool_rows``), and per ReLU neuron with pre-activation bounds ``[l, u]``:

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
from verifriend.bounds.graph import (
    AddNode,
    AffineNode,
    AvgPoolNode,
    Conv2dNode,
    FlattenNode,
    Graph,
    InputNode,
    LinearNode,
    MaxPoolNode,
    ReLUNode,
)
from verifriend.bounds.ibp import check_box, check_problem
from verifriend.bounds.splits import Splits
from verifriend.errors import UnsupportedLayerError, UserError

Interval = tuple[Tensor, Tensor]

_INF = highspy.kHighsInf


@dataclass
class MilpResult:
    """One minimization of ``c . f(x)`` over a domain.

    ``status`` is "optimal", "infeasible" or "time_limit". ``value`` is the best
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
        h.addCol(1.0, -_INF, _INF, 0, np.zeros(0, np.int32), np.zeros(0))
        first_row = h.getNumRow()
        # rows C_r y - t <= -d_r
        idx = np.concatenate([np.append(self.output_cols, t)] * k).astype(np.int32)
        val = np.concatenate([np.append(C[r], -1.0) for r in range(k)])
        starts = (np.arange(k) * (self.num_outputs + 1)).astype(np.int32)
        h.addRows(k, np.full(k, -_INF), -d, idx.size, starts, idx, val)
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
        if status in (S.kInfeasible, S.kUnboundedOrInfeasible):
            # HiGHS's presolve has been seen to call a feasible model with chains of
            # equalities infeasible; "infeasible" proves things, so it must be re-derived
            # without presolve before it is believed
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
        raise RuntimeError(f"HiGHS stopped with model status {h.modelStatusToString(status)}.")

    def _point(self) -> Tensor:
        col = np.asarray(self.highs.getSolution().col_value)[self.input_cols]
        x = torch.as_tensor(col, dtype=torch.float64).view(self.x_lower.shape)
        # the solver may overshoot the box by its feasibility tolerance
        x = torch.minimum(torch.maximum(x, self.x_lower.double()), self.x_upper.double())
        return x.to(self.x_lower.dtype)


class _Rows:
    """Columns and sparse rows collected as numpy blocks, handed to HiGHS in bulk."""

    def __init__(self):
        self.n_cols = 0
        self.col_lo: list[np.ndarray] = []
        self.col_hi: list[np.ndarray] = []
        self.binaries: list[np.ndarray] = []
        self.n_rows = 0
        self.row_lo: list[np.ndarray] = []
        self.row_hi: list[np.ndarray] = []
        self.tri: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def cols(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        idx = np.arange(self.n_cols, self.n_cols + lo.size)
        self.n_cols += lo.size
        self.col_lo.append(lo.astype(np.float64))
        self.col_hi.append(hi.astype(np.float64))
        return idx

    def rows(self, lo, hi, *terms: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Rows ``lo <= sum of terms <= hi``; a term is (local row, column, coefficient)."""
        k = np.size(lo)
        for r, c, v in terms:
            self.tri.append((r + self.n_rows, c, v.astype(np.float64)))
        self.row_lo.append(np.broadcast_to(np.asarray(lo, np.float64), (k,)))
        self.row_hi.append(np.broadcast_to(np.asarray(hi, np.float64), (k,)))
        self.n_rows += k

    def build(self, bound_fix: list) -> tuple[highspy.Highs, int]:
        lo, hi = np.concatenate(self.col_lo), np.concatenate(self.col_hi)
        for cols, new_lo, new_hi in bound_fix:
            lo[cols] = np.maximum(lo[cols], new_lo)
            hi[cols] = np.minimum(hi[cols], new_hi)
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        # exact optimum: no relative gap; HiGHS's absolute default (1e-6) is looser
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", 1e-9)
        h.addVars(self.n_cols, lo, hi)
        if self.tri:
            r = np.concatenate([t[0] for t in self.tri])
            c = np.concatenate([t[1] for t in self.tri])
            v = np.concatenate([t[2] for t in self.tri])
            # merge repeated (row, column) entries (e.g. x + x), HiGHS rejects them
            key, inv = np.unique(r * self.n_cols + c, return_inverse=True)
            v = np.bincount(inv.ravel(), weights=v, minlength=key.size)
            r, c = key // self.n_cols, key % self.n_cols
            starts = np.searchsorted(r, np.arange(self.n_rows)).astype(np.int32)
            h.addRows(
                self.n_rows,
                np.concatenate(self.row_lo),
                np.concatenate(self.row_hi),
                key.size,
                starts,
                c.astype(np.int32),
                v,
            )
        nbin = 0
        if self.binaries:
            idx = np.concatenate(self.binaries).astype(np.int32)
            nbin = idx.size
            if nbin:
                kinds = np.full(nbin, int(highspy.HighsVarType.kInteger), np.uint8)
                h.changeColsIntegrality(nbin, idx, kinds)
        return h, nbin


def _dense_map(node, in_shape) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with ``node(v) = M v + b`` on flat vectors: the node applied to a basis."""
    n_in = math.prod(in_shape)
    with torch.no_grad():
        zero = node.forward(torch.zeros(1, *in_shape, dtype=torch.float64))
        basis = torch.eye(n_in, dtype=torch.float64).view(n_in, *in_shape)
        M = (node.forward(basis) - zero).reshape(n_in, -1).T
    return M.numpy(), zero.reshape(-1).numpy()


def _affine_rows(rows: _Rows, out: np.ndarray, src: np.ndarray, M: np.ndarray, b) -> None:
    """Rows ``out - M src = b`` for a dense ``M`` (zeros skipped)."""
    i, j = np.nonzero(M)
    k = out.size
    rows.rows(b, b, (np.arange(k), out, np.ones(k)), (i, src[j], -M[i, j]))


def _flat(t: Tensor, d: int) -> np.ndarray:
    return t[d].detach().cpu().double().reshape(-1).numpy()


def encodable(graph: Graph) -> bool:
    """Whether :func:`encode` has an exact encoding of every node of ``graph`` (e.g. not for
    sigmoid or tanh)."""
    return all(isinstance(node, _ENCODABLE) for node in graph.nodes)


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
        if not isinstance(node, _ENCODABLE):
            raise UnsupportedLayerError(
                f"layer '{node.name}' ({type(node).__name__.removesuffix('Node')}) has no "
                "MILP encoding; the MILP supports Linear, Conv2d, Affine, ReLU, Flatten, "
                "Add, AvgPool and MaxPool nodes."
            )
    g = graph.to(device="cpu", dtype=torch.float64)
    rel = math.sqrt(torch.finfo(intervals[0][0].dtype).eps)
    signs = {} if splits is None else splits.signs

    rows = _Rows()
    bound_fix: list = []  # (cols, lower, upper) tightenings applied at the end
    cols: list[np.ndarray] = []
    empty = False
    for j, node in enumerate(g.nodes):
        if isinstance(node, FlattenNode):
            cols.append(cols[node.inputs[0]])
            continue
        if isinstance(node, InputNode):
            lo, hi = _flat(x_lower, domain), _flat(x_upper, domain)
        else:
            lo, hi = _flat(intervals[j][0], domain), _flat(intervals[j][1], domain)
            # sound bounds computed in floating point: widen by their rounding
            lo, hi = lo - rel * (1 + np.abs(lo)), hi + rel * (1 + np.abs(hi))
        empty |= bool((lo > hi).any())
        out = rows.cols(lo, np.maximum(lo, hi))
        cols.append(out)
        src = [cols[i] for i in node.inputs]
        if isinstance(node, InputNode):
            continue
        if isinstance(node, LinearNode):
            W = node.weight.numpy()
            _affine_rows(rows, out, src[0], W, node.bias.numpy())
        elif isinstance(node, (Conv2dNode, AvgPoolNode)):
            M, b = _dense_map(node, node.in_shape)
            _affine_rows(rows, out, src[0], M, b)
        elif isinstance(node, AffineNode):
            ones = torch.ones(1, *node.shape, dtype=torch.float64)
            scale = (ones * node.per_channel(node.scale)).reshape(-1).numpy()
            shift = (ones * node.per_channel(node.shift)).reshape(-1).numpy()
            k = np.arange(out.size)
            rows.rows(shift, shift, (k, out, np.ones(k.size)), (k, src[0], -scale))
        elif isinstance(node, AddNode):
            k = np.arange(out.size)
            one = np.ones(k.size)
            rows.rows(0.0 * one, 0.0 * one, (k, out, one), (k, src[0], -one), (k, src[1], -one))
        elif isinstance(node, MaxPoolNode):
            l = _flat(intervals[node.inputs[0]][0], domain)
            u = _flat(intervals[node.inputs[0]][1], domain)
            _maxpool_rows(rows, node, out, src[0], l, u, rel, relax)
        elif isinstance(node, ReLUNode):
            z = src[0]
            l = _flat(intervals[node.inputs[0]][0], domain)
            u = _flat(intervals[node.inputs[0]][1], domain)
            s = np.zeros(z.size) if j not in signs else _flat(signs[j], domain)
            l, u = np.where(s > 0, np.maximum(l, 0), l), np.where(s < 0, np.minimum(u, 0), u)
            empty |= bool((l > u + rel * (2 + np.abs(l) + np.abs(u))).any())
            bound_fix.append((z[s > 0], 0.0, _INF))  # split z >= 0
            bound_fix.append((z[s < 0], -_INF, 0.0))  # split z <= 0
            _relu_rows(rows, bound_fix, out, z, l, u, s, rel, relax)
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


_ENCODABLE = (
    InputNode,
    LinearNode,
    Conv2dNode,
    AffineNode,
    ReLUNode,
    FlattenNode,
    AddNode,
    AvgPoolNode,
    MaxPoolNode,
)


def _windows(node: MaxPoolNode) -> np.ndarray:
    """(n_out, kh*kw) flat input index of each output's window; -1 marks padding."""
    C = node.in_shape[0]
    idx = torch.arange(1, math.prod(node.in_shape) + 1, dtype=torch.float64)
    cols = torch.nn.functional.unfold(
        idx.view(1, *node.in_shape), node.kernel, node.dilation, node.padding, node.stride
    )  # (1, C*kh*kw, L), zero-padded
    K = cols.shape[1] // C
    cols = cols.view(C, K, -1).transpose(1, 2).reshape(-1, K)  # output (c, l) -> window
    return cols.numpy().astype(np.int64) - 1


def _maxpool_rows(rows: _Rows, node, y, z, l, u, rel, relax) -> None:
    """``y = max`` of each window: ``y >= z_i`` for all i, and one binary per input
    that can be the maximum (``u_i >= max_j l_j``) selects which one ``y`` equals:
    ``y <= z_i + (max_j u_j - l_i)(1 - a_i)``, ``sum a_i = 1``."""
    win = _windows(node)
    valid = win >= 0
    w = np.where(valid, win, 0)
    lo = np.where(valid, l[w] - rel * (1 + np.abs(l[w])), -np.inf)
    up = np.where(valid, u[w] + rel * (1 + np.abs(u[w])), -np.inf)
    o, i = np.nonzero(valid)
    k = o.size
    rows.rows(
        np.zeros(k),
        np.full(k, _INF),
        (np.arange(k), y[o], np.ones(k)),
        (np.arange(k), z[w[o, i]], -np.ones(k)),
    )  # y >= z_i
    cand = valid & (up >= lo.max(1, keepdims=True))
    single = cand.sum(1) == 1
    o1 = np.nonzero(single)[0]
    if o1.size:  # the maximum is known: y = z_i
        i1 = cand[o1].argmax(1)
        r = np.arange(o1.size)
        rows.rows(
            np.zeros(o1.size),
            np.zeros(o1.size),
            (r, y[o1], np.ones(o1.size)),
            (r, z[w[o1, i1]], -np.ones(o1.size)),
        )
    o, i = np.nonzero(cand & ~single[:, None])
    if not o.size:
        return
    a = rows.cols(np.zeros(o.size), np.ones(o.size))
    if not relax:
        rows.binaries.append(a)
    big = up.max(1)[o] - lo[o, i]
    r = np.arange(o.size)
    rows.rows(
        np.full(o.size, -_INF),
        big,
        (r, y[o], np.ones(o.size)),
        (r, z[w[o, i]], -np.ones(o.size)),
        (r, a, big),
    )  # y <= z_i + big (1 - a_i)
    groups, g = np.unique(o, return_inverse=True)
    rows.rows(np.ones(groups.size), np.ones(groups.size), (g.ravel(), a, np.ones(o.size)))


def _relu_rows(rows: _Rows, bound_fix, y, z, l, u, s, rel, relax) -> None:
    """ReLU ``y = max(z, 0)`` given pre-activation bounds ``[l, u]`` and split signs ``s``."""
    active = (s > 0) | ((s == 0) & (l >= 0))
    inactive = ~active & ((s < 0) | (u <= 0))
    unstable = ~active & ~inactive
    bound_fix.append((y, 0.0, _INF))
    bound_fix.append((y[inactive], 0.0, 0.0))
    k = int(active.sum())
    if k:
        one = np.ones(k)
        rows.rows(
            np.zeros(k),
            np.zeros(k),
            (np.arange(k), y[active], one),
            (np.arange(k), z[active], -one),
        )  # y = z
    k = int(unstable.sum())
    if not k:
        return
    # the big-M constants must be sound: widen like the variable boxes
    lo, up = l[unstable], u[unstable]
    lo, up = lo - rel * (1 + np.abs(lo)), up + rel * (1 + np.abs(up))
    yu, zu = y[unstable], z[unstable]
    a = rows.cols(np.zeros(k), np.ones(k))
    if not relax:
        rows.binaries.append(a)
    one, r = np.ones(k), np.arange(k)
    rows.rows(np.zeros(k), np.full(k, _INF), (r, yu, one), (r, zu, -one))  # y >= z
    rows.rows(np.full(k, -_INF), -lo, (r, yu, one), (r, zu, -one), (r, a, -lo))  # y <= z - l(1-a)
    rows.rows(np.full(k, -_INF), np.zeros(k), (r, yu, one), (r, a, -up))  # y <= u a


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
