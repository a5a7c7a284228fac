"""The complete verifier against an exact oracle (MILP) on small random networks."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
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
