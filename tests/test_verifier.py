"""The complete verifier against an exact oracle (MILP) on small random networks."""

from __future__ import annotations

from collections import Counter

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.graph import Graph
from verifriend.deadline import Deadline
from verifriend.specs.spec import Spec
from verifriend.verify.bab import BabConfig
from verifriend.verify.milp import milp_clause_minima
from verifriend.verify.verifier import VerifierConfig, outward_box, verify_spec

F64 = torch.float64


def small_net(seed: int, n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, prev = [], n_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers).eval()


def clause_minima(graph: Graph, spec: Spec) -> torch.Tensor:
    """Exact, by MILP: for each clause, min over the box of its worst row (<= 0: reachable)."""
    C, d, clause = spec.to_spec_matrix()
    lo, hi = spec.input_box(graph.input_shape)
    return milp_clause_minima(graph, lo, hi, C, d, clause)


def oracle(graph: Graph, spec: Spec) -> str:
    return "unsat" if bool((clause_minima(graph, spec) > 0).all()) else "sat"

def wide_problem(seed: int, n_in: int, hidden):
    """A robustness property of a random network on a box too wide for CROWN (eps 1) and
    its MILP answer: (graph, spec, truth, clause, graph of the spec rows, float32 box,
    float64 graph)."""
    net = small_net(seed, n_in, tuple(hidden), 3)
    graph = from_module(net, (n_in,))
    x = torch.rand(n_in, generator=torch.Generator().manual_seed(seed))
    label = int(net(x.unsqueeze(0)).argmax())
    spec = Spec.linf_robustness(x, label, 1.0, 3, lo=-10.0, hi=10.0)
    C, d, clause = spec.to_spec_matrix()
    gs = graph.with_output_map(C.float(), d.float())
    lo, hi = outward_box(spec, (n_in,))
    return graph, spec, oracle(graph, spec), clause, gs, lo, hi, graph.to(dtype=F64)



def random_clauses(net, x, n_out, rng, n_clauses, rows):
    """An OR of AND-clauses ``A y >= b`` with random directions (thresholds set later)."""
    return [(torch.randn(rows, n_out, generator=rng, dtype=F64), torch.zeros(rows, dtype=F64))
            for _ in range(n_clauses)]


def near_tie(graph, spec, rng) -> tuple[Spec, float]:
    """``spec`` with each clause's thresholds shifted so that its exact margin is a random
    +-(0.2% .. 20%) of the output range: the incomplete stage rarely decides these, so
    branch and bound (and a careful attack) must; a quarter of the clauses are reachable.
    Returns the spec and the output range used."""
    minima = clause_minima(graph, spec)
    lo, hi = spec.input_box(graph.input_shape)
    with torch.no_grad():
        ys = graph.to(dtype=F64)(lo + (hi - lo) * torch.rand(64, *lo.shape[1:], generator=rng,
                                                             dtype=F64))
    scale = float(ys.abs().max()) + 1e-3
    clauses = []
    for j, (A, b) in enumerate(spec.clauses):
        size = scale * 10 ** (-2.7 + 2 * float(torch.rand(1, generator=rng)))
        target = -size if float(torch.rand(1, generator=rng)) < 0.25 else size
        # rows read C y + d = -A y + b: raising b by t raises the clause's min-max by t
        clauses.append((A, b + (target - float(minima[j]))))
    return Spec(spec.lower, spec.upper, clauses, spec.n_outputs), scale


N_RANDOM_NETWORKS = 500
# per property: generous, so that a property the verifier decides in seconds on an idle
# machine is still decided on a loaded one (the verdict must not depend on the machine's
# speed); only near-ties of AND-clauses may use it all up
TIMEOUT = 120
_decided: list[tuple[str, str]] = []  # (status, stage)
_mnc: list[int] = []  # multi-neuron rows built, per property that reached MN-BaB's root
# three of four properties run with multi-neuron constraints (MN-BaB; BaBSR or ACS
# branching), the fourth with the default branch and bound. (ACS + CAB with recomputed
# layers, slower here, once left a clear clause-property undecided in 120 s on a loaded
# machine; tests/test_mnbab.py checks it against the MILP.)
MNBAB_ARMS = [
    {},
    {"mnc": True},
    {"mnc": True, "branching": "acs"},
    {"mnc": True},
]


# derandomized: CI checks the same 500 cases every run (a timeout allowed on a near-tie
# must not turn into a flaky failure); set derandomize=False locally to explore new cases
@settings(max_examples=N_RANDOM_NETWORKS, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 100_000),
    n_in=st.integers(1, 8),
    hidden=st.lists(st.integers(2, 10), min_size=1, max_size=3),
    n_out=st.integers(2, 4),
    eps=st.sampled_from([0.05, 0.2, 0.5, 1.0]),
    kind=st.sampled_from(["robustness", "clauses"]),
    n_clauses=st.integers(1, 3),
    rows=st.integers(1, 3),
    splitter=st.sampled_from(["relu", "relu", "input"]),
)
def _verdict_matches_milp(seed, n_in, hidden, n_out, eps, kind, n_clauses, rows, splitter):
    net = small_net(seed, n_in, tuple(hidden), n_out)
    graph = from_module(net, (n_in,))
    rng = torch.Generator().manual_seed(seed)
    x = torch.rand(n_in, generator=rng)
    scale = float("inf")
    if kind == "robustness":
        label = int(net(x.unsqueeze(0)).argmax())
        spec = Spec.linf_robustness(x, label, eps, n_out, lo=-10.0, hi=10.0)
    else:
        x64 = x.double()
        spec = Spec(x64 - eps, x64 + eps, random_clauses(net, x, n_out, rng, n_clauses, rows),
                    n_out)
        spec, scale = near_tie(graph, spec, rng)
    minima = clause_minima(graph, spec)
    truth = "unsat" if bool((minima > 0).all()) else "sat"
    # a property decided by a hair (|margin| < 1e-5) may stay undecided in float
    # arithmetic; it must still never get the wrong answer
    tie = bool((minima.abs() < 1e-5).any())
    cfg = VerifierConfig(input_split_dims=0 if splitter == "relu" else 100,
                         bab=BabConfig(batch=8, iterations=5, **MNBAB_ARMS[seed % 4]),
                         milp_unstable=0)
    v = verify_spec(graph, [spec], (n_in,), timeout=TIMEOUT, config=cfg)
    if "mnc_rows" in v.details:
        _mnc.append(v.details["mnc_rows"])
    if v.status in ("timeout", "unknown"):
        # One-row clauses are decided (ReLU splitting ends in exact leaves; input splitting
        # too, but for ties). A clause of several rows is excluded from a domain only when
        # one row is, so near a tie where the box's image passes beside the clause's
        # corner only the exact leaves decide, and they can come too late: such a timeout
        # is allowed (and counted), a wrong answer never.
        multi = any(len(b) > 1 for _, b in spec.clauses)
        assert tie or (multi and bool((minima.abs() < 0.01 * scale).any())), (v, minima)
    else:
        assert v.status == truth, (v, minima)
    if v.status == "sat":
        xc, _ = v.counterexample
        assert torch.all(xc >= spec.lower) and torch.all(xc <= spec.upper)
        assert spec.is_violated(graph.to(dtype=F64)(xc.view(1, -1))[0])
    _decided.append((v.status, v.stage))


def test_no_wrong_verdict_on_500_random_networks():
    """The verifier against the exact MILP oracle on 500 random small networks and
    properties (robustness, and ORs of AND-clauses), with ReLU and input splitting, three
    in four with MN-BaB's multi-neuron constraints (BaBSR or ACS branching)."""
    _decided.clear()
    _mnc.clear()
    _verdict_matches_milp()
    assert len(_decided) >= N_RANDOM_NETWORKS
    counts = Counter(_decided)
    print(sorted(counts.items()))
    # MN-BaB really ran: properties reached its root, and some of those got rows
    print(f"MN-BaB roots: {len(_mnc)}, with rows: {sum(n > 0 for n in _mnc)}")
    # (most properties are decided before branch and bound; tests/test_mnbab.py sends
    # every property of its draw through MN-BaB's branch and bound)
    # (how many reach it depends on how fast the attack is: a sanity check, not a count)
    assert len(_mnc) >= 5 and sum(n > 0 for n in _mnc) >= 3, _mnc
    # both answers occur (neither is a default), and branch and bound decides some
    assert sum(n for (s, _), n in counts.items() if s == "sat") > 50, counts
    assert sum(n for (s, _), n in counts.items() if s == "unsat") > 50, counts
    assert counts[("unsat", "bab")] > 10, counts
    undecided = sum(n for (s, _), n in counts.items() if s in ("timeout", "unknown"))
    assert undecided <= N_RANDOM_NETWORKS // 50, counts  # rare: near-ties of AND-clauses


def test_outward_box_contains_the_float64_box():
    x = torch.tensor([0.1, 0.2, 0.3, 1 / 3], dtype=F64)
    spec = Spec.linf_robustness(x, 0, 1e-3, 2, lo=0.0, hi=1.0)
    lo, hi = outward_box(spec, (4,))
    assert lo.dtype == torch.float32
    assert torch.all(lo.to(F64) <= spec.lower) and torch.all(hi.to(F64) >= spec.upper)


# derandomized: a random draw found a clear property (seed=1276, n_in=5, hidden=[12, 9, 8],
# relu) that ReLU splitting alone does not decide in 30 s (not a wrong answer); the verifier
# decides it with its whole-box MILP stage (test_small_network_goes_to_the_whole_box_milp)
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_in=st.integers(2, 6),
    hidden=st.lists(st.integers(4, 12), min_size=2, max_size=3),
    branching=st.sampled_from(["babsr", "fsb"]),
    splitter=st.sampled_from(["relu", "input"]),
)
@example(seed=6, n_in=6, hidden=[4, 4], branching="babsr", splitter="input")  # a near-tie
def test_branch_and_bound_alone_matches_milp(seed, n_in, hidden, branching, splitter):
    """Branch and bound started right after CROWN (no attack, no alpha stage) on boxes wide
    enough that CROWN cannot decide: its answer equals the MILP's."""
    from verifriend.bounds.alpha_crown import alpha_crown
    from verifriend.bounds.crown import crown
    from verifriend.verify.attack import check_points, falsify
    from verifriend.verify.bab import relu_bab
    from verifriend.verify.input_split import input_bab
    from verifriend.verify.verifier import _exact_leaf

    graph, spec, truth, clause, gs, lo, hi, g64 = wide_problem(seed, n_in, hidden)

    def check(xs):
        return check_points(g64, spec, xs)

    cfg = VerifierConfig(bab=BabConfig(batch=4, iterations=3, branching=branching))
    deadline = Deadline.after(30)
    leaf = _exact_leaf(gs, spec, lo, hi, clause, cfg, check, deadline)

    if splitter == "input":
        out = input_bab(gs, lo, hi, clause, deadline=deadline, check=check, batch=16,
                        exact_leaf=lambda blo, bhi, sec: leaf(None, sec, box=(blo, bhi)))
    else:
        a, state = alpha_crown(gs, lo, hi, None, iterations=0, intermediate=False)
        # no attack stage; only the candidates that bounding produces (and the leaves)
        out = relu_bab(gs, lo, hi, clause, a.lower, crown(gs, lo, hi).intervals, state,
                       deadline=deadline, config=cfg.bab, exact_leaf=leaf,
                       attack=lambda xs, steps: falsify(graph, spec, candidates=xs, steps=steps,
                                                        restarts=0, graph64=g64))
    if out.status == "timeout":
        # without the attack stage, a counterexample in a sliver of the box (a near-tie)
        # is found only at exact leaves, which can take longer than the budget; a
        # property with a clear answer must be decided
        assert bool((clause_minima(graph, spec).abs() < 1e-3).any()), out
        return
    assert out.status in ("sat", "unsat")
    assert out.status == truth
    if out.status == "sat":
        xc, _ = out.x
        assert spec.is_violated(g64(xc.view(1, -1))[0])


def test_small_network_goes_to_the_whole_box_milp():
    """A clear property (margin 5% of the output range) on a 29-ReLU network that ReLU
    splitting alone leaves open for more than 30 s: the MILP stage decides it."""
    net = small_net(1276, 5, (12, 9, 8), 3)
    graph = from_module(net, (5,))
    x = torch.rand(5, generator=torch.Generator().manual_seed(1276))
    label = int(net(x.unsqueeze(0)).argmax())
    spec = Spec.linf_robustness(x, label, 1.0, 3, lo=-10.0, hi=10.0)
    v = verify_spec(graph, [spec], (5,), timeout=30, config=VerifierConfig(input_split_dims=0))
    assert (v.status, v.stage) == (oracle(graph, spec), "milp")
