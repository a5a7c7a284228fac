"""The soundness campaign's exact oracle, independent of verifriend, and its instances.

For every (input box, clause) pair the oracle bounds the largest value over the box of
``min_k (a_k . Y - b_k)`` (the clause is reachable iff it is >= 0): ``milp_max`` for ReLU
networks (a big-M MILP from the numpy weights, solved by HiGHS with and without presolve,
checked against sampled points), ``bnb_max`` for sigmoid / tanh networks (a vectorized
float64 branch and bound over the input box with interval and mean-value bounds).
``make_instance`` draws network, property and threshold placement (``free``, ``tie-sat``,
``tie-unsat``) for one index and computes the optima; ``oracle_answer`` turns them into
sat / unsat / tie / unchecked.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .netgen import ACT, Net, _sigmoid, forward, make_net
from .props import Prop, make_prop

# oracle tolerances, relative to the instance's output scale S (see Instance.scale)
MILP_TOL = 1e-7  # HiGHS (feasibility 1e-9) is trusted to this: a MILP optimum closer is a tie
ROUND_TOL = 1e-9  # float64 rounding of a forward pass; a point closer than this is a tie
PAD = 1e-12  # relative widening of every float64 interval (rounding of the bound itself)
TINY = 1e-300
BNB_BOXES = 6000  # boxes per (box, clause) pair before the branch and bound gives up
BNB_SECONDS = 0.25
MILP_SECONDS = 5.0


# ------------------------------------------------------------------ oracle: MILP (ReLU)


def interval_bounds(layers, acts, lo, hi):
    """Pre-activation bounds per hidden layer in float64 interval arithmetic, widened."""
    c, r = (lo + hi) / 2, (hi - lo) / 2
    c = c.copy()
    r = np.maximum(hi - c, c - lo)
    out = []
    for k, (W, b) in enumerate(layers[:-1]):
        c, r = c @ W.T + b, r @ np.abs(W).T
        r = r + 1e-9 * (np.abs(c) + r) + 1e-12
        out.append((c - r, c + r))
        fl, fu = ACT[acts[k]](c - r), ACT[acts[k]](c + r)
        c, r = (fl + fu) / 2, (fu - fl) / 2 + 1e-12
    return out


@dataclass
class PairOpt:
    """The oracle on one (input box, clause): a point ``x`` (full flat input) with the best
    value found ``v`` and a bound ``ub`` >= the maximum, each up to ``tol``."""

    v: float
    x: np.ndarray | None
    ub: float
    tol: float
    method: str
    status: str  # "optimal" | "budget"


def milp_max(layers, acts, lo, hi, A, bvec, tol: float) -> PairOpt:
    """max over the box of ``min_k (A_k . net(x) - b_k)`` by a big-M MILP in HiGHS."""
    import highspy

    bounds = interval_bounds(layers, acts, lo, hi)
    col_lo, col_hi, integ = list(lo), list(hi), [0] * len(lo)
    rows: list[tuple[dict, float, float]] = []  # ({col: coef}, row_lo, row_hi)
    prev = list(range(len(lo)))  # columns of the previous layer (None: constant 0)

    def new_col(a, b, is_int=False):
        col_lo.append(a)
        col_hi.append(b)
        integ.append(1 if is_int else 0)
        return len(col_lo) - 1

    for k, (W, b) in enumerate(layers[:-1]):
        lb, ubd = bounds[k]
        cur = []
        for i in range(W.shape[0]):
            l, u = float(lb[i]), float(ubd[i])
            z = {prev[j]: float(W[i, j]) for j in range(W.shape[1])
                 if prev[j] is not None and W[i, j] != 0.0}
            if u <= 0:
                cur.append(None)
                continue
            if l >= 0:
                a = new_col(l, u)
                row = dict(z)
                row[a] = row.get(a, 0.0) - 1.0
                rows.append((row, -float(b[i]), -float(b[i])))  # z - a = 0
                cur.append(a)
                continue
            a = new_col(0.0, u)
            d = new_col(0.0, 1.0, True)
            row = {j: -w for j, w in z.items()}
            row[a] = 1.0
            rows.append((row, float(b[i]), math.inf))  # a - Wx >= b
            rows.append(({a: 1.0, d: -u}, -math.inf, 0.0))  # a <= u d
            row = {j: -w for j, w in z.items()}
            row[a] = 1.0
            row[d] = -l
            rows.append((row, -math.inf, float(b[i]) - l))  # a <= z - l (1 - d)
            cur.append(a)
        prev = cur
    W, b = layers[-1]
    G, g0 = A @ W, A @ b - bvec  # clause rows as affine maps of the last hidden layer
    t = new_col(-math.inf, math.inf)
    for k in range(G.shape[0]):
        row = {prev[j]: -float(G[k, j]) for j in range(G.shape[1])
               if prev[j] is not None and G[k, j] != 0.0}
        row[t] = 1.0
        rows.append((row, -math.inf, float(g0[k])))  # t <= G x + g0
    n = len(col_lo)
    cost = np.zeros(n)
    cost[t] = -1.0
    inf = highspy.kHighsInf
    starts, idx, vals = [], [], []
    for row, _, _ in rows:
        starts.append(len(idx))
        idx += list(row)
        vals += list(row.values())
    model = (n, np.array([max(v, -inf) for v in col_lo]), np.array([min(v, inf) for v in col_hi]),
             cost, [j for j in range(n) if integ[j]],
             (len(rows), np.array([max(r[1], -inf) for r in rows]),
              np.array([min(r[2], inf) for r in rows]), len(idx),
              np.array(starts, dtype=np.int32), np.array(idx, dtype=np.int32),
              np.array(vals, dtype=np.float64)))
    # two solves, with and without presolve: at feasibility tolerances of 1e-9 HiGHS 1.16
    # was seen to return wrong optima (and presolve to call feasible models infeasible);
    # at 1e-8 none in 626 checked pairs, and the two solves must agree to within ``tol``
    (x1, ub1, ok1), (x2, ub2, ok2) = (_highs_max(model, lo, presolve)
                                      for presolve in ("choose", "off"))
    cands = [(_clause_value(layers, acts, A, bvec, x), x) for x in (x1, x2) if x is not None]
    v, x = max(cands, key=lambda c: c[0]) if cands else (-math.inf, None)
    ub = max(ub1, ub2)
    optimal = ok1 and ok2 and abs(ub1 - ub2) <= tol
    if ok1 and ok2 and not optimal:
        ub = math.inf  # two optimal solves that disagree: neither is believed
    # a sample of the box must not beat the bound (a cheap check of the solver's claim)
    pts = lo + (hi - lo) * np.random.default_rng(0).random((64, len(lo)))
    y = forward(layers, acts, pts)
    if float(np.max(np.min(y @ A.T - bvec, axis=1))) > ub + tol or v > ub + tol:
        optimal, ub = False, math.inf
    return PairOpt(v, x, ub, tol, "milp", "optimal" if optimal else "budget")


def _highs_max(model, lo, presolve: str):
    """Solve the MILP ``model`` (minimize -t); (x or None, upper bound on t, optimal?)."""
    import highspy

    n, col_lo, col_hi, cost, ints, rows = model
    h = highspy.Highs()
    # no "threads" option: HiGHS refuses to run with one that differs from the process's
    # scheduler, which the verifier's own (default) HiGHS runs may have started first
    for key, val in (("output_flag", False), ("time_limit", MILP_SECONDS),
                     ("presolve", presolve), ("mip_rel_gap", 1e-9), ("mip_abs_gap", 1e-10),
                     ("primal_feasibility_tolerance", 1e-8),
                     ("dual_feasibility_tolerance", 1e-8),
                     ("mip_feasibility_tolerance", 1e-8), ("random_seed", 0)):
        h.setOptionValue(key, val)
    h.addVars(n, col_lo, col_hi)
    h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
    if ints:
        h.changeColsIntegrality(len(ints), np.array(ints, dtype=np.int32),
                                np.array([highspy.HighsVarType.kInteger] * len(ints)))
    h.addRows(*rows)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    sol = h.getSolution()
    optimal = status == highspy.HighsModelStatus.kOptimal
    x = None
    if info.primal_solution_status == 2 and len(sol.col_value) == n:
        x = np.clip(np.array(sol.col_value[: len(lo)]), lo, col_hi[: len(lo)])
    if ints:
        ub = -float(info.mip_dual_bound)
    else:
        ub = -float(info.objective_function_value) if optimal else math.inf
    if not math.isfinite(ub) or status in (highspy.HighsModelStatus.kInfeasible,
                                           highspy.HighsModelStatus.kUnboundedOrInfeasible):
        ub, optimal = math.inf, False  # the box is not empty and t is free: not believed
    return x, ub, optimal


def _clause_value(layers, acts, A, bvec, x) -> float:
    y = forward(layers, acts, x[None])[0]
    return float(np.min(A @ y - bvec))


# ------------------------------------------------------------------ oracle: branch and bound


def _act_slopes(name: str, lo, hi):
    """A sound range [dl, du] of the activation's derivative over [lo, hi] (elementwise)."""
    if name == "relu":
        return (lo > 0).astype(float), (hi > 0).astype(float)
    # sigmoid' and tanh' are even and decrease in |z|: largest at the point nearest 0
    near = np.clip(0.0, lo, hi)
    if name == "sigmoid":
        def d(z):
            s = _sigmoid(z)
            return s * (1.0 - s)
    else:
        def d(z):
            return 1.0 - np.tanh(z) ** 2
    return np.minimum(d(lo), d(hi)) - 1e-12, d(near) + 1e-12


def _bnb_bounds(layers, acts, lo, hi):
    """For boxes (N, d): upper bounds (N,) of the min over the rows of the last layer, the
    value at each box's centre (N,), and per dimension a split score (N, d)."""
    c = (lo + hi) / 2
    r = np.maximum(hi - c, c - lo)
    N, d = c.shape
    ic, ir = c, r
    Jc = np.broadcast_to(np.eye(d), (N, d, d))
    Jr = np.zeros((N, d, d))
    pc = c
    for k, (W, b) in enumerate(layers):
        Wa = np.abs(W)
        ic = ic @ W.T + b
        ir = ir @ Wa.T
        ir = ir + PAD * (np.abs(ic) + ir) + TINY
        Jc = np.einsum("ij,njd->nid", W, Jc)
        Jr = np.einsum("ij,njd->nid", Wa, Jr)
        Jr = Jr + PAD * np.abs(Jc)
        pc = pc @ W.T + b
        if k < len(acts):
            f = ACT[acts[k]]
            lo_z, hi_z = ic - ir, ic + ir
            fl, fu = f(lo_z), f(hi_z)
            dl, du = _act_slopes(acts[k], lo_z, hi_z)
            ic, ir = (fl + fu) / 2, (fu - fl) / 2 + PAD * (np.abs(fl) + np.abs(fu)) + TINY
            dc, dr = ((dl + du) / 2)[..., None], ((du - dl) / 2)[..., None]
            Jc, Jr = dc * Jc, np.abs(dc) * Jr + dr * (np.abs(Jc) + Jr)
            pc = f(pc)
    ub_ia = ic + ir
    g = np.maximum(np.abs(Jc - Jr), np.abs(Jc + Jr))  # (N, k, d)
    ub_mv = pc + np.einsum("nkd,nd->nk", g, r)
    ub_mv = ub_mv + 1e-10 * (np.abs(pc) + np.abs(ub_mv)) + 1e-14
    ub = np.minimum(ub_ia, ub_mv).min(axis=1)
    return ub, pc.min(axis=1), r * g.max(axis=1)


def bnb_max(layers, acts, lo, hi, A, bvec, tol: float, *, gap: float,
            stop_above: float = math.inf, stop_below: float = -math.inf) -> PairOpt:
    """max over the box of ``min_k (A_k . net(x) - b_k)`` by branch and bound on the input
    box (free dimensions only), until the gap is <= ``gap``, a point >= ``stop_above`` or a
    bound < ``stop_below`` is found, or the budget ends."""
    start = time.perf_counter()
    free = np.flatnonzero(hi > lo)
    W0, b0 = layers[0]
    base = lo.copy()
    fixed_b = b0 + W0 @ np.where(hi > lo, 0.0, lo)
    fl = [(W0[:, free], fixed_b)] + list(layers[1:])
    fl[-1] = (A @ fl[-1][0], A @ fl[-1][1] - bvec)  # the clause rows as the last layer
    if len(free) == 0:
        v = _clause_value(layers, acts, A, bvec, base)
        return PairOpt(v, base, v + ROUND_TOL * (1 + abs(v)), tol, "bisection", "optimal")
    blo, bhi = lo[free][None], hi[free][None]
    ub, val, score = _bnb_bounds(fl, acts, blo, bhi)
    best = float(val[0])
    xbest = (blo[0] + bhi[0]) / 2
    seen = 1
    status = "budget"
    while True:
        top = max(best, float(ub.max())) if len(ub) else best
        if top - best <= gap or best >= stop_above or top < stop_below:
            status = "optimal"
            break
        if seen >= BNB_BOXES or time.perf_counter() - start > BNB_SECONDS:
            break
        keep = ub > best
        blo, bhi, ub, score = blo[keep], bhi[keep], ub[keep], score[keep]
        take = np.argsort(-ub)[:256]
        rest = np.ones(len(ub), bool)
        rest[take] = False
        tl, th, ts = blo[take], bhi[take], score[take]
        dim = np.argmax(ts, axis=1)
        mid = (tl[np.arange(len(take)), dim] + th[np.arange(len(take)), dim]) / 2
        l2, h1 = tl.copy(), th.copy()
        h1[np.arange(len(take)), dim] = mid
        l2[np.arange(len(take)), dim] = mid
        clo, chi = np.concatenate([tl, l2]), np.concatenate([h1, th])
        cub, cval, cscore = _bnb_bounds(fl, acts, clo, chi)
        seen += len(clo)
        j = int(np.argmax(cval))
        if cval[j] > best:
            best, xbest = float(cval[j]), (clo[j] + chi[j]) / 2
        blo = np.concatenate([blo[rest], clo])
        bhi = np.concatenate([bhi[rest], chi])
        ub = np.concatenate([ub[rest], cub])
        score = np.concatenate([score[rest], cscore])
    top = max(best, float(ub.max())) if len(ub) else best
    x = base.copy()
    x[free] = np.clip(xbest, lo[free], hi[free])
    v = _clause_value(layers, acts, A, bvec, x)
    return PairOpt(v, x, top, tol, "bisection", status)


# ------------------------------------------------------------------ instances


@dataclass
class Instance:
    index: int
    net: Net
    prop: Prop
    mode: str  # "free" | "tie-sat" | "tie-unsat"
    delta: float
    scale: float
    opts: list[list[PairOpt]]  # [box][clause], for the final network and thresholds
    offsets: list[float]
    oracle_s: float
    timeout: float


def _solve_pair(net: Net, layers, acts, lo, hi, A, b, scale, gap, stop_above, stop_below):
    if net.family == "relu":
        return milp_max(layers, acts, lo, hi, A, b, MILP_TOL * scale)
    return bnb_max(layers, acts, lo, hi, A, b, ROUND_TOL * scale, gap=gap,
                   stop_above=stop_above, stop_below=stop_below)


def make_instance(index: int, seed: int, timeout_scale: float) -> Instance:
    """Network, property and oracle optima for one index (deterministic)."""
    rng = np.random.default_rng([seed, index])
    family = "relu" if rng.random() < 0.55 else "s-shaped"
    kind = "conv" if rng.random() < 0.35 else "fc"
    net = make_net(rng, kind, family)
    layers, acts = net.dense()
    prop = make_prop(rng, net, layers, acts, "robust" if rng.random() < 0.4 else "general")
    mode = str(rng.choice(["free", "tie-sat", "tie-unsat"], p=[0.4, 0.3, 0.3]))
    # relative margins: 1e-7 of the scale lies inside the MILP oracle's tolerance (a tie
    # unless the point is on the violated side), 1e-6 at float32's resolution
    rel = float(10.0 ** rng.choice([-7.0, -6.0, -5.0, -4.0, -3.0, -2.0],
                                   p=[0.1, 0.1, 0.2, 0.2, 0.2, 0.2]))
    timeout = float(rng.uniform(0.4, 2.0)) * timeout_scale
    lo0, hi0 = prop.boxes[0]
    yc = forward(layers, acts, ((lo0 + hi0) / 2)[None])[0]
    scale = 1.0 + max(float(np.max(np.abs(A @ yc))) for A, _ in prop.clauses)
    delta = rel * scale
    t0 = time.perf_counter()
    if mode == "free":
        gap, above, below = ROUND_TOL * scale, ROUND_TOL * scale, -ROUND_TOL * scale
    else:
        gap, above, below = delta / 4, math.inf, -math.inf
    opts = [[_solve_pair(net, layers, acts, lo, hi, A, b, scale, gap, above, below)
             for A, b in prop.clauses] for lo, hi in prop.boxes]
    n_cl = len(prop.clauses)
    offsets = [0.0] * n_cl
    if mode != "free":
        V = [max(o[j].v for o in opts) for j in range(n_cl)]
        U = [max(o[j].ub for o in opts) for j in range(n_cl)]
        star = int(np.argmax(V)) if rng.random() < 0.7 else int(rng.integers(0, n_cl))
        for j in range(n_cl):
            if not (math.isfinite(V[j]) and math.isfinite(U[j])):
                continue
            if j == star:
                offsets[j] = (delta - V[j] if mode == "tie-sat"
                              else -max(U[j] + delta / 2, V[j] + delta))
            elif rng.random() < 0.85:
                offsets[j] = -(U[j] + 10.0 ** rng.uniform(-3, 0) * scale)
        offsets = _apply_offsets(net, prop, offsets)
        layers, acts = net.dense()
        for o in opts:
            for j, (A, b) in enumerate(prop.clauses):
                p = o[j]
                if p.x is not None:
                    p.v = _clause_value(layers, acts, A, b, p.x)
                p.ub = p.ub + offsets[j] + PAD * scale
    return Instance(index, net, prop, mode, delta, scale, opts, offsets,
                    time.perf_counter() - t0, timeout)


def _apply_offsets(net: Net, prop: Prop, offsets: list[float]) -> list[float]:
    """Raise clause ``j``'s value by ``offsets[j]``: thresholds for general properties, the
    competing class's float32 output bias for robustness. Returns the offsets applied
    (exactly, in float64)."""
    if prop.kind == "general":
        prop.clauses = [(A, b - o) for (A, b), o in zip(prop.clauses, offsets)]
        return [float(o) for o in offsets]
    last = net.ops[-1]
    done = []
    for (A, _), o in zip(prop.clauses, offsets):
        j = int(np.flatnonzero(A[0] > 0)[0])
        old = last["b"][j]
        last["b"][j] = np.float32(float(old) + o)
        done.append(float(last["b"][j]) - float(old))
    return done


def oracle_answer(inst: Instance) -> tuple[str, dict]:
    """The oracle's verdict on the final instance: sat / unsat / tie / unchecked."""
    band = ROUND_TOL * inst.scale
    best, worst_ub, states = -math.inf, -math.inf, []
    x = None
    for o in inst.opts:
        for p in o:
            if p.v > best:
                best, x = p.v, p.x
            worst_ub = max(worst_ub, p.ub)
            if p.v > band:
                states.append("sat")
            elif p.ub < -p.tol:
                states.append("unsat")
            elif p.ub - p.v <= 2 * p.tol + band and p.ub < math.inf:
                states.append("tie")
            else:
                states.append("unchecked")
    if "sat" in states:
        ans = "sat"
    elif all(s == "unsat" for s in states):
        ans = "unsat"
    elif "unchecked" in states:
        ans = "unchecked"
    else:
        ans = "tie"
    method = inst.opts[0][0].method
    return ans, {"method": method, "best": best, "ub": worst_ub, "x": x}
