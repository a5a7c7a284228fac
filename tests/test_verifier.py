"""The complete verifier against an exact oracle (MILP) on small random networks."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

from verifriend.bounds.graph import Graph
from verifriend.specs.spec import Spec
from verifriend.verify.bab import BabConfig
from verifriend.verify.milp import milp_bounds
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


def oracle(graph: Graph, spec: Spec) -> str:
    """Exact answer by MILP: a one-row clause is reachable iff min of its row value <= 0."""
    C, d, _ = spec.to_spec_matrix()
    lo, hi = spec.input_box(graph.input_shape)
    mins = milp_bounds(graph.to(dtype=F64), lo, hi, C.unsqueeze(0))[0] + d
    return "unsat" if spec.proved(mins) else "sat"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_in=st.integers(2, 12),
    hidden=st.lists(st.integers(3, 10), min_size=1, max_size=3),
    eps=st.sampled_from([0.05, 0.2, 0.5]),
    relu_split=st.booleans(),
)
def test_verdicts_match_milp(seed, n_in, hidden, eps, relu_split):
    net = small_net(seed, n_in, tuple(hidden), 3)
    graph = Graph.from_module(net, (n_in,))
    x = torch.rand(n_in, generator=torch.Generator().manual_seed(seed))
    label = int(net(x.unsqueeze(0)).argmax())
    spec = Spec.linf_robustness(x, label, eps, 3, lo=-10.0, hi=10.0)
    truth = oracle(graph, spec)
    cfg = VerifierConfig(input_split_dims=0 if relu_split else 100,
                         bab=BabConfig(batch=8, iterations=5))
    v = verify_spec(graph, [spec], (n_in,), timeout=60, config=cfg)
    assert v.status in ("sat", "unsat"), v  # small nets are decided within the budget
    assert v.status == truth
    if v.status == "sat":
        xc, _ = v.counterexample
        assert torch.all(xc >= spec.lower) and torch.all(xc <= spec.upper)
        assert spec.is_violated(graph.to(dtype=F64)(xc.view(1, -1))[0])


def test_outward_box_contains_the_float64_box():
    x = torch.tensor([0.1, 0.2, 0.3, 1 / 3], dtype=F64)
    spec = Spec.linf_robustness(x, 0, 1e-3, 2, lo=0.0, hi=1.0)
    lo, hi = outward_box(spec, (4,))
    assert lo.dtype == torch.float32
    assert torch.all(lo.to(F64) <= spec.lower) and torch.all(hi.to(F64) >= spec.upper)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    from verifriend.bounds.crown import crown
    from verifriend.bounds.optimize import alpha_crown
    from verifriend.verify.attack import check_points
    from verifriend.verify.bab import relu_bab
    from verifriend.verify.input_split import input_bab
    from verifriend.verify.verifier import _exact_leaf

    net = small_net(seed, n_in, tuple(hidden), 3)
    graph = Graph.from_module(net, (n_in,))
    x = torch.rand(n_in, generator=torch.Generator().manual_seed(seed))
    label = int(net(x.unsqueeze(0)).argmax())
    spec = Spec.linf_robustness(x, label, 1.0, 3, lo=-10.0, hi=10.0)
    truth = oracle(graph, spec)
    C, d, clause = spec.to_spec_matrix()
    gs = graph.with_output_map(C.float(), d.float())
    lo, hi = outward_box(spec, (n_in,))
    g64 = graph.to(dtype=F64)

    def check(xs):
        return check_points(g64, spec, xs)

    deadline = __import__("time").monotonic() + 60
    if splitter == "input":
        # input splitting has no exact leaf: a property whose margin is ~0 (a tie in the
        # MILP) can run out of time; it must never answer wrongly
        deadline = __import__("time").monotonic() + 10
        out = input_bab(gs, lo, hi, clause, deadline=deadline, check=check, batch=16)
        if out.status == "timeout":
            return
    else:
        a, state = alpha_crown(gs, lo, hi, None, iterations=0, intermediate=False)
        cfg = VerifierConfig(bab=BabConfig(batch=4, iterations=3, branching=branching))
        out = relu_bab(gs, lo, hi, clause, a.lower, crown(gs, lo, hi).intervals, state,
                       deadline=deadline, config=cfg.bab,
                       exact_leaf=_exact_leaf(gs, spec, lo, hi, clause, cfg, check))
    assert out.status in ("sat", "unsat")
    assert out.status == truth
    if out.status == "sat":
        xc, _ = out.x
        assert spec.is_violated(g64(xc.view(1, -1))[0])
