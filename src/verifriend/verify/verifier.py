"""The complete verifier: falsification, incomplete bounds, then branch and bound.

``verify_spec`` decides one property (a list of input boxes with one unsafe output
region, as read from a VNN-LIB file). Stages, each stopping as soon as it decides:

1. **attack**: PGD towards every clause (``verify.attack.falsify``) within a small
   share of the budget; a hit is re-checked in float64 before ``sat``;
2. **incomplete**: IBP, CROWN, alpha-CROWN on the spec rows, each proof confirmed
   in float64 (CROWN recomputed, alpha-CROWN through its fixed state);
3. **branch and bound**: ReLU splitting with beta-CROWN (``verify.bab``), or input
   splitting for low-dimensional inputs (<= ``input_split_dims``, e.g. ACAS Xu).

Input boxes are rounded outward when cast to float32, so every float32 bound
covers the float64 box of the spec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifriend.bounds.confirm import confirm_bound
from verifriend.bounds.crown import crown, crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import ibp
from verifriend.bounds.optimize import alpha_crown
from verifriend.specs.spec import Spec
from verifriend.verify.bab import BabConfig, clause_margin, relu_bab
from verifriend.verify.input_split import input_bab
from verifriend.verify.result import Verdict

F64 = torch.float64


@dataclass
class VerifierConfig:
    """Budget shares and stage options of :func:`verify_spec`."""

    attack_share: float = 0.1  # of the timeout, for the first attack
    alpha_iterations: int = 20
    alpha_intermediate: bool = True
    input_split_dims: int = 10  # input splitting instead of ReLU splitting up to this size
    input_batch: int = 1024  # boxes bounded per step of input splitting
    bab: BabConfig = field(default_factory=BabConfig)
    exact_leaf_time: float = 30.0  # seconds per LP of a fully split domain


def outward_box(spec: Spec, shape, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """The spec's box as a batch of one in ``dtype``, rounded outward (contains the float64 box)."""
    lo64, hi64 = spec.input_box(shape)
    lo, hi = lo64.to(dtype), hi64.to(dtype)
    inf = torch.tensor(float("inf"), dtype=dtype)
    lo = torch.where(lo.to(F64) > lo64, torch.nextafter(lo, -inf), lo)
    hi = torch.where(hi.to(F64) < hi64, torch.nextafter(hi, inf), hi)
    return lo, hi


def _exact_leaf(gs: Graph, spec: Spec, lo: Tensor, hi: Tensor, clause: Tensor, cfg, check):
    """Decide a fully split domain exactly (HiGHS, float64).

    Its region is linear, so an LP decides it, but for neurons that float32 found stable
    and float64 does not: those keep their binaries (a small MILP), so the answer is exact.
    """
    from verifriend.verify.milp import encode

    g64 = gs.to(dtype=F64)
    lo64, hi64 = lo.to(F64), hi.to(F64)
    n_clauses = int(clause.max()) + 1

    def decide(splits, box=None):
        """``splits``: a fully split domain of the root box; or ``box`` (lo, hi): a sub-box
        without unstable neurons (input splitting), with ``splits`` None."""
        blo, bhi = (lo64, hi64) if box is None else (box[0].to(F64), box[1].to(F64))
        hook = splits.clamp_hook(g64) if splits is not None else None
        with torch.no_grad():
            ivs = crown_intervals(g64, blo, bhi, tighten=hook)
        model = encode(g64, blo, bhi, ivs, splits, relax=False)
        eye = torch.eye(gs.num_outputs, dtype=F64)
        verdict = "unsat"
        for j in range(n_clauses):
            rows = clause == j
            # min over the region of the clause's worst row decides the clause
            res = model.minimize_max(eye[rows], torch.zeros(int(rows.sum()), dtype=F64),
                                     time_limit=cfg.exact_leaf_time)
            if res.status == "infeasible":
                return "unsat", None  # the split region is empty
            if res.status != "optimal":
                verdict = "unknown"
                continue
            if res.x is not None:
                hit = check(res.x.reshape(1, -1))
                if hit is not None:
                    return "sat", hit
            # HiGHS works to ~1e-7 feasibility: ask for a clear margin before calling it proved
            if res.value <= 1e-6:
                verdict = "unknown"
        return verdict, None

    return decide


def verify_spec(
    graph: Graph,
    specs: list[Spec],
    input_shape,
    *,
    timeout: float,
    config: VerifierConfig | None = None,
    progress=None,
) -> Verdict:
    """Decide whether some input of some box of ``specs`` reaches the unsafe region.

    ``graph`` is the network (float32), ``input_shape`` its input shape without
    batch. Returns a :class:`Verdict` ("sat" with a float64-checked counterexample,
    "unsat" with every proof confirmed in float64, "timeout" or "unknown").
    ``progress(message)`` receives short status lines.
    """
    from verifriend.verify.attack import check_points, falsify

    cfg = config or VerifierConfig()
    start = time.monotonic()
    deadline = start + timeout
    say = progress or (lambda msg: None)
    g64 = graph.to(dtype=F64)

    def done(status, stage, domains=0, cex=None, **details):
        return Verdict(status, time.monotonic() - start, stage, domains, cex, details)

    budget = cfg.attack_share * timeout / max(1, len(specs))
    for spec in specs:
        hit = falsify(graph, spec, input_shape, time_budget=budget, graph64=g64)
        if hit is not None:
            return done("sat", "attack", cex=hit)
    say("attack found nothing")
    domains = 0
    for k, spec in enumerate(specs):
        C, d, clause = spec.to_spec_matrix()
        if C.shape[0] == 0:
            return done("unknown" if spec.n_clauses else "unsat", "spec")
        n_clauses = spec.n_clauses
        gs = graph.with_output_map(C.float(), d.float())
        lo, hi = outward_box(spec, input_shape)
        with torch.no_grad():
            b = ibp(gs, lo, hi)
            if not spec.proved(b.lower[0]):
                b = crown(gs, lo, hi)
        if spec.proved(b.lower[0]):
            with torch.no_grad():  # confirm: the same bound in float64
                b64 = crown(gs.to(dtype=F64), lo.to(F64), hi.to(F64))
            if spec.proved(b64.lower[0]):
                say(f"box {k}: proved by {b.method}")
                continue
        if time.monotonic() > deadline:
            return done("timeout", "crown", domains)
        a, state = alpha_crown(gs, lo, hi, None, iterations=cfg.alpha_iterations,
                               intermediate=cfg.alpha_intermediate)
        a64 = confirm_bound(gs, lo, hi, None, state)  # the state's bound, in float64
        if spec.proved(a64.lower[0]):
            say(f"box {k}: proved by alpha-CROWN")
            continue
        say(f"box {k}: alpha-CROWN margin {float(clause_margin(a.lower, clause, n_clauses)):.4g}")

        def check(xs: Tensor, spec=spec):
            return check_points(g64, spec, xs)

        if spec.n_inputs <= cfg.input_split_dims:
            leaf = _exact_leaf(gs, spec, lo, hi, clause, cfg, check)
            out = input_bab(gs, lo, hi, clause, deadline=deadline, check=check,
                            batch=cfg.input_batch,
                            exact_leaf=lambda blo, bhi, leaf=leaf: leaf(None, (blo, bhi)))
        else:
            # BaB keeps CROWN's intermediate bounds and the final-layer alphas
            out = relu_bab(
                gs, lo, hi, clause, a.lower, a.intervals, state, deadline=deadline,
                config=cfg.bab,
                exact_leaf=_exact_leaf(gs, spec, lo, hi, clause, cfg, check),
                on_progress=lambda n, size, worst, k=k: say(
                    f"box {k}: {n} domains, {size} open, worst margin {worst:.4g}"),
                root_intervals64=a64.intervals,
            )
        domains += out.domains
        if out.status == "sat":
            return done("sat", "bab", domains, cex=out.x)
        if out.status != "unsat":
            return done(out.status, "bab", domains)
    return done("unsat", "bab" if domains else "incomplete", domains)
