"""The complete verifier: cheap bounds, falsification, tighter bounds, then branch and bound.

The stages follow alpha-beta-CROWN's pipeline (Xu et al., ICLR 2021; Wang et al., NeurIPS
2021), with the exact MILP of Tjeng, Xiao, Tedrake, "Evaluating Robustness of Neural
Networks with Mixed Integer Programming", ICLR 2019, for small networks.

``verify_spec`` decides one property (a list of input boxes with one unsafe output
region, as read from a VNN-LIB file). Stages, each stopping as soon as it decides:

1. **cheap bounds**: IBP, then CROWN on the spec rows, each proof confirmed by CROWN
   in float64 (a box they prove is done before any attack);
2. **attack**: PGD towards every clause (``verify.attack.falsify``) within a small
   share of the budget; a hit is re-checked in float64 before ``sat``;
3. **alpha-CROWN**, its proof confirmed in float64 through its fixed state;
4. **exact MILP** over the whole box for small networks (at most ``milp_neurons`` ReLUs,
   ``milp_unstable`` of them unstable), within ``milp_share`` of the time left;
5. **branch and bound**: ReLU splitting with beta-CROWN (``verify.bab``), or input
   splitting for low-dimensional inputs (<= ``input_split_dims``, e.g. ACAS Xu).

One :class:`verifriend.deadline.Deadline` bounds the whole run: every stage checks it
between iterations (CROWN between layers, the optimizers between steps, PGD between
steps, BaB between batches) and uninterruptible solves get only the time left; a
verdict reached after it is a timeout.

Input boxes are rounded outward when cast to float32, so every float32 bound
covers the float64 box of the spec.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifriend.bounds.alpha_crown import alpha_crown
from verifriend.bounds.confirm import confirm_bound
from verifriend.bounds.crown import crown, crown_intervals
from verifriend.bounds.graph import Graph
from verifriend.bounds.ibp import ibp
from verifriend.deadline import Deadline, DeadlineExpired
from verifriend.specs.spec import Spec
from verifriend.verify.bab import BabConfig, BabOutcome, clause_margin, relu_bab, unstable_count
from verifriend.verify.input_split import input_bab
from verifriend.verify.milp import encodable
from verifriend.verify.mnc_root import mnc_pays, multineuron_root
from verifriend.verify.result import Verdict

F64 = torch.float64


@dataclass(frozen=True)
class VerifierConfig:
    """Budget shares and stage options of :func:`verify_spec`; each field's ``help`` and
    limits (``metadata``) are what the options file of the jobs lists and is checked
    against (:mod:`verifriend.options`, :mod:`verifriend.app.config`)."""

    attack_share: float = field(default=0.1, metadata={
        "help": "share of the timeout for the first attack (PGD towards every clause)",
        "min": 0, "max": 1})
    attack_restarts: int = field(default=64, metadata={
        "help": "random starts per clause of the first attack, besides the box centre "
                "(every other one moved by output-diversified steps first)", "min": 0})
    alpha_iterations: int = field(default=20, metadata={
        "help": "alpha-CROWN optimization steps before the MILP and branch and bound",
        "min": 0})
    alpha_intermediate: bool = field(default=True, metadata={
        "help": "alpha-CROWN also optimizes the bounds of unstable intermediate neurons"})
    input_split_dims: int = field(default=10, metadata={
        "help": "input splitting instead of ReLU splitting for inputs of at most this many "
                "dimensions (e.g. ACAS Xu)", "min": 0})
    input_batch: int = field(default=1024, metadata={
        "help": "boxes bounded per step of input splitting", "min": 1})
    bab: BabConfig = field(default_factory=BabConfig, metadata={
        "help": "branch and bound over ReLU splits, bounded by beta-CROWN"})
    exact_leaf_time: float = field(default=30.0, metadata={
        "help": "seconds, at most, for the LP (or small MILP) that decides a fully split "
                "domain exactly", "min": 0, "min_open": True})
    # a whole-box MILP before BaB on networks with at most this many unstable ReLUs and
    # ReLUs in all (a MILP's cost grows with both: on mnistfc's 512 ReLUs and 784
    # inputs, 50 binaries already took > 30 s while BaB needed 1 s)
    milp_unstable: int = field(default=64, metadata={
        "help": "one exact MILP over the whole box before branch and bound when at most "
                "this many ReLUs are unstable after alpha-CROWN (0: never)", "min": 0})
    milp_neurons: int = field(default=256, metadata={
        "help": "... and the network has at most this many ReLUs in all", "min": 0})
    milp_share: float = field(default=0.25, metadata={
        "help": "share of the time left, at most, for that MILP", "min": 0, "max": 1})

    def __post_init__(self) -> None:
        from verifriend.options import check_fields

        check_fields(self)


def outward_box(spec: Spec, shape, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """The spec's box as a batch of one in ``dtype``, rounded outward (contains the float64 box)."""
    lo64, hi64 = spec.input_box(shape)
    lo, hi = lo64.to(dtype), hi64.to(dtype)
    inf = torch.tensor(float("inf"), dtype=dtype)
    lo = torch.where(lo.to(F64) > lo64, torch.nextafter(lo, -inf), lo)
    hi = torch.where(hi.to(F64) < hi64, torch.nextafter(hi, inf), hi)
    return lo, hi


def _simplex_grid(k: int, n: int) -> Tensor:
    """Weights (G, k) on the simplex with denominators ``n``, without the k unit vectors."""
    def parts(total, slots):
        if slots == 1:
            yield (total,)
            return
        for first in range(total + 1):
            for rest in parts(total - first, slots - 1):
                yield (first, *rest)
    w = torch.tensor([p for p in parts(n, k) if max(p) < n], dtype=torch.float64) / n
    return w


def clause_averages(C: Tensor, d: Tensor, clause: Tensor, grid: int = 6):
    """Spec rows plus weighted averages of the rows of every AND-clause, each mapped to its
    clause: for 2 or 3 rows a grid of weights on the simplex (denominator ``grid``), for
    more rows their mean.

    A clause is unreachable where its worst row is > 0, and the worst row is at least any
    average: so an average row > 0 excludes the clause too. Near a point where rows cross,
    every single row's bound can stay <= 0 on arbitrarily small boxes while the right
    average's bound is > 0."""
    rows_C, rows_d, rows_k = [C], [d], [clause]
    for j in range(int(clause.max()) + 1 if clause.numel() else 0):
        idx = (clause == j).nonzero().squeeze(1)
        k = idx.numel()
        if k < 2:
            continue
        w = (_simplex_grid(k, grid) if k <= 3 else torch.full((1, k), 1.0 / k, dtype=F64))
        w = w.to(C.dtype)
        rows_C.append(w @ C[idx])
        rows_d.append(w @ d[idx])
        rows_k.append(clause[idx[:1]].expand(w.shape[0]))
    return torch.cat(rows_C), torch.cat(rows_d), torch.cat(rows_k)


def _exact_leaf(gs: Graph, spec: Spec, lo: Tensor, hi: Tensor, clause: Tensor, cfg, check,
                deadline: Deadline):
    """Decide a fully split domain exactly (HiGHS, float64).

    Its region is linear, so an LP decides it, but for neurons that float32 found stable
    and float64 does not: those keep their binaries (a small MILP), so the answer is exact.
    Each solve gets at most the time left before ``deadline``.
    """
    from verifriend.verify.milp import encode

    cpu = torch.device("cpu")  # HiGHS reads CPU arrays: the exact leaves run there
    g64 = gs.to(device=cpu, dtype=F64)
    lo64, hi64 = lo.to(cpu, F64), hi.to(cpu, F64)
    clause = clause.to(cpu)
    n_clauses = int(clause.max()) + 1

    def decide(splits, seconds=None, *, box=None):
        """``splits``: a domain of the root box; or ``box`` (lo, hi): a sub-box (input
        splitting), with ``splits`` None. ``seconds`` caps the solver time (all clauses)."""
        stop = deadline.at if seconds is None else min(deadline.at, time.monotonic() + seconds)
        blo, bhi = (lo64, hi64) if box is None else (box[0].to(cpu, F64), box[1].to(cpu, F64))
        if splits is not None:
            splits = splits.to(cpu)
        hook = splits.clamp_hook(g64) if splits is not None else None
        with torch.no_grad():
            ivs = crown_intervals(g64, blo, bhi, tighten=hook, deadline=deadline)
        model = encode(g64, blo, bhi, ivs, splits, relax=False)
        eye = torch.eye(gs.num_outputs, dtype=F64)
        verdict = "unsat"
        for j in range(n_clauses):
            rows = clause == j
            # min over the region of the clause's worst row decides the clause
            limit = min(cfg.exact_leaf_time, stop - time.monotonic())
            if limit <= 0:
                return "unknown", None
            res = model.minimize_max(eye[rows], torch.zeros(int(rows.sum()), dtype=F64),
                                     time_limit=limit)
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


@dataclass
class _Box:
    """One input box of a property, ready for bounding: the spec graph whose outputs are
    the spec rows (plus AND-clause averages), each row's clause, the outward float32 box."""

    k: int
    spec: Spec
    gs: Graph
    clause: Tensor
    n_clauses: int
    lo: Tensor
    hi: Tensor

    @classmethod
    def build(cls, k: int, spec: Spec, graph: Graph, input_shape) -> _Box | None:
        """None when the spec has no output constraint (nothing to bound)."""
        C, d, clause = spec.to_spec_matrix()
        if C.shape[0] == 0:
            return None
        C, d, clause = clause_averages(C, d, clause)
        lo, hi = outward_box(spec, input_shape)
        dev = graph.device
        return cls(k, spec, graph.with_output_map(C.float(), d.float()), clause.to(dev),
                   spec.n_clauses, lo.to(dev), hi.to(dev))

    def proved(self, lower: Tensor) -> bool:
        """Whether lower bounds of the rows exclude every clause."""
        return bool(clause_margin(lower, self.clause, self.n_clauses).min() > 0)


def verify_spec(
    graph: Graph,
    specs: list[Spec],
    input_shape,
    *,
    timeout: float,
    config: VerifierConfig | None = None,
    progress=None,
    deadline: Deadline | None = None,
) -> Verdict:
    """Decide whether some input of some box of ``specs`` reaches the unsafe region.

    ``graph`` is the network (float32), ``input_shape`` its input shape without
    batch. Returns a :class:`Verdict` ("sat" with a float64-checked counterexample,
    "unsat" with every proof confirmed in float64, "timeout" or "unknown").
    ``progress(message)`` receives short status lines.

    ``timeout`` seconds from the call, or the earlier ``deadline``, bound the whole run:
    every stage checks the deadline between its iterations and gets only the time left,
    and a verdict reached after it is reported as "timeout" (the late one is kept in
    ``details["late"]``, never counted). ``time_s`` is the time from the call.
    """
    start = time.monotonic()
    deadline = Deadline.after(timeout) if deadline is None else deadline.earlier(timeout)
    state = {"stage": "bounds", "domains": 0}
    try:
        verdict = _verify(graph, specs, input_shape, config or VerifierConfig(), deadline,
                          progress or (lambda msg: None), state)
    except DeadlineExpired:
        verdict = Verdict("timeout", 0.0, state["stage"], state["domains"])
    verdict.details.update({k: state[k] for k in ("mnc_seconds", "mnc_rows") if k in state})
    verdict.time_s = time.monotonic() - start
    if verdict.status in ("sat", "unsat") and deadline.expired():
        # reached, but too late: a verdict after the deadline is a timeout
        verdict = Verdict("timeout", verdict.time_s, verdict.stage, verdict.domains,
                          details={**verdict.details, "late": verdict.status})
    return verdict


def _verify(graph: Graph, specs: list[Spec], input_shape, cfg: VerifierConfig,
            deadline: Deadline, say, state: dict) -> Verdict:
    """The stages of :func:`verify_spec`; ``state`` tracks the stage and domains so far."""
    run = _Run(graph, graph.to(dtype=F64), input_shape, cfg, deadline, say, state)
    # the cheap sound bounds first: a property they prove needs no attack (and its time
    # then says how easy it was, not how long the attack searched in vain)
    boxes = []
    for k, spec in enumerate(specs):
        deadline.check()
        box = _Box.build(k, spec, graph, input_shape)
        if box is None:
            return _done("unknown" if spec.n_clauses else "unsat", "spec")
        if not run.cheap_proof(box):
            boxes.append(box)
    if not boxes:
        return _done("unsat", "incomplete")
    hit = run.attack(boxes)
    if hit is not None:
        return _done("sat", "attack", cex=hit)
    say("attack found nothing")
    for box in boxes:
        verdict = run.decide(box)
        if verdict is not None:
            return verdict
    stage = "bab" if run.domains else "milp" if run.milp_proofs else "incomplete"
    return _done("unsat", stage, run.domains)


def _done(status, stage, domains=0, cex=None, **details) -> Verdict:
    return Verdict(status, 0.0, stage, domains, cex, details)


@dataclass
class _Run:
    """One run of :func:`_verify`: the network (float32 and float64) and the run's options,
    deadline, progress callback ``say`` and ``state``; the stages after the cheap bounds
    count the BaB ``domains`` and the boxes proved by MILP."""

    graph: Graph
    g64: Graph
    input_shape: tuple
    cfg: VerifierConfig
    deadline: Deadline
    say: Callable[[str], None]
    state: dict
    domains: int = 0
    milp_proofs: int = 0
    best: dict = field(default_factory=dict)  # box -> best lower bound of its margin so far

    def bound(self, box: _Box, method: str, margin: Tensor | float) -> None:
        """Say ``method``'s margin on ``box`` (> 0 proves it) and the best one so far."""
        self.best[box.k] = best = max(float(margin), self.best.get(box.k, -math.inf))
        self.say(f"box {box.k}: {method} margin {float(margin):.4g}, best bound {best:.4g}")

    def cheap_proof(self, box: _Box) -> bool:
        """Whether IBP, else CROWN, proves the box, confirmed by CROWN in float64."""
        deadline = self.deadline
        with torch.no_grad():
            b = ibp(box.gs, box.lo, box.hi)
            if not box.proved(b.lower):
                self.bound(box, "IBP", clause_margin(b.lower, box.clause, box.n_clauses))
                b = crown(box.gs, box.lo, box.hi, deadline=deadline)
                if not box.proved(b.lower):
                    self.bound(box, "CROWN", clause_margin(b.lower, box.clause, box.n_clauses))
        if box.proved(b.lower):
            with torch.no_grad():  # confirm: the same bound in float64
                b64 = crown(box.gs.to(dtype=F64), box.lo.to(F64), box.hi.to(F64),
                            deadline=deadline)
            if box.proved(b64.lower):
                self.say(f"box {box.k}: proved by {b.method}")
                return True
        return False

    def attack(self, boxes: list[_Box]):
        """PGD on every box within ``attack_share`` of the time left: a hit, or None."""
        from verifriend.verify.attack import falsify

        self.state["stage"] = "attack"
        deadline = self.deadline
        budget = self.cfg.attack_share * deadline.left() / len(boxes)
        self.say(f"attack: PGD on {len(boxes)} box(es), {budget:.2g} s each")
        for box in boxes:
            hit = falsify(self.graph, box.spec, self.input_shape,
                          time_budget=min(budget, deadline.left()), graph64=self.g64,
                          restarts=self.cfg.attack_restarts)
            if hit is not None:
                return hit
        return None

    def decide(self, box: _Box) -> Verdict | None:
        """alpha-CROWN, the whole-box MILP, then branch and bound on one box: None when
        the box is proved, else the verdict of the run."""
        from verifriend.verify.attack import check_points

        cfg, deadline, state = self.cfg, self.deadline, self.state
        state["stage"] = "alpha"
        deadline.check()
        alpha = self.alpha(box)
        if alpha is None:
            return None
        a, opt_state, a64 = alpha

        def check(xs: Tensor, spec=box.spec):
            return check_points(self.g64, spec, xs, self.graph)

        # exact leaves need a MILP encoding of every layer (none for sigmoid or tanh):
        # without it, fully split domains stay undecided
        leaf = (_exact_leaf(box.gs, box.spec, box.lo, box.hi, box.clause, cfg, check, deadline)
                if encodable(box.gs) else None)
        neurons = sum(math.prod(box.gs.nodes[r].shape) for r in box.gs.relu_nodes())
        if (leaf is not None and neurons <= cfg.milp_neurons and 0 < cfg.milp_unstable
                and int(unstable_count(box.gs, a.intervals)[0]) <= cfg.milp_unstable):
            # a small network: one MILP over the whole box (the solver shares its work
            # across activation regions) usually decides long before splitting would
            state["stage"] = "milp"
            self.say(f"box {box.k}: MILP over the whole box")
            verdict, x = leaf(None, cfg.milp_share * deadline.left())
            if verdict == "sat":
                return _done("sat", "milp", self.domains, cex=x)
            if verdict == "unsat":
                self.say(f"box {box.k}: proved by MILP")
                self.milp_proofs += 1
                return None
            self.say(f"box {box.k}: MILP {verdict}")
        state["stage"] = "bab"
        out = self.bab(box, a, opt_state, a64, leaf, check)
        self.domains += out.domains
        state["domains"] = self.domains
        if out.status == "sat":
            return _done("sat", "bab", self.domains, cex=out.x)
        if out.status != "unsat":
            return _done(out.status, "bab", self.domains)
        return None

    def alpha(self, box: _Box):
        """alpha-CROWN on the box: None when its proof holds in float64 (through its fixed
        state), else (its bounds, its state, the state's bounds in float64)."""
        cfg, deadline = self.cfg, self.deadline
        a, opt_state = alpha_crown(box.gs, box.lo, box.hi, None, iterations=cfg.alpha_iterations,
                                   intermediate=cfg.alpha_intermediate, deadline=deadline)
        # the state's bound, in float64
        a64 = confirm_bound(box.gs, box.lo, box.hi, None, opt_state, deadline=deadline)
        if box.proved(a64.lower):
            self.say(f"box {box.k}: proved by alpha-CROWN")
            return None
        self.bound(box, "alpha-CROWN", clause_margin(a.lower, box.clause, box.n_clauses))
        return a, opt_state, a64

    def multineuron(self, box: _Box, a, opt_state, a64):
        """MN-BaB's root: multi-neuron rows, then alphas and gammas (:mod:`.mnc_root`).
        None when that proves the box in float64, else its (bounds, state, float64 bounds)."""
        self.state["stage"] = "mnc"
        root = multineuron_root(box.gs, box.lo, box.hi, a, opt_state, a64, self.cfg.bab,
                                deadline=self.deadline)
        self.state["mnc_seconds"] = self.state.get("mnc_seconds", 0.0) + root.seconds
        self.state["mnc_rows"] = self.state.get("mnc_rows", 0) + root.rows
        if box.proved(root.bounds64.lower):
            self.say(f"box {box.k}: proved by multi-neuron constraints at the root")
            return None
        self.bound(box, f"{root.rows} multi-neuron rows ({root.seconds:.2f} s)",
                   clause_margin(root.bounds.lower, box.clause, box.n_clauses))
        return root.bounds, root.state, root.bounds64

    def bab_progress(self, box: _Box):
        """BaB's ``on_progress``: at most a line a second, its worst open margin its bound."""
        last = [-math.inf]

        def report(n: int, size: int, worst: float) -> None:
            if not size:
                self.say(f"box {box.k}: BaB {n} domains, none open")
            elif time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                self.bound(box, f"BaB {n} domains, {size} open,", worst)
        return report

    def bab(self, box: _Box, a, opt_state, a64, leaf, check):
        """Branch and bound on the box: input splitting for few inputs (or no ReLUs), else
        ReLU splitting from alpha-CROWN's bounds and state."""
        from verifriend.verify.attack import falsify

        cfg, deadline, say, k, spec = self.cfg, self.deadline, self.say, box.k, box.spec
        graph, g64, input_shape = self.graph, self.g64, self.input_shape
        if spec.n_inputs <= cfg.input_split_dims or not box.gs.relu_nodes():
            # (without ReLUs there is nothing else to split)
            say(f"box {k}: branch and bound, input splitting")
            return input_bab(box.gs, box.lo, box.hi, box.clause, deadline=deadline, check=check,
                             batch=cfg.input_batch,
                             exact_leaf=None if leaf is None else
                             lambda blo, bhi, sec, leaf=leaf: leaf(None, sec, box=(blo, bhi)))
        if cfg.bab.mnc or (cfg.bab.mnc is None and mnc_pays(box.gs, a.intervals)):
            root = self.multineuron(box, a, opt_state, a64)
            if root is None:
                return BabOutcome("unsat", 0, 0)
            a, opt_state, a64 = root
        # BaB keeps CROWN's intermediate bounds and the final-layer alphas
        say(f"box {k}: branch and bound, ReLU splitting")
        return relu_bab(
            box.gs, box.lo, box.hi, box.clause, a.lower, a.intervals, opt_state,
            deadline=deadline,
            config=cfg.bab,
            exact_leaf=leaf,
            on_progress=self.bab_progress(box),
            root_intervals64=a64.intervals,
            attack=lambda xs, steps, spec=spec: falsify(
                graph, spec, input_shape, candidates=xs.flatten(1), steps=steps, restarts=0,
                time_budget=min(1.0, deadline.left()), graph64=g64),
        )
