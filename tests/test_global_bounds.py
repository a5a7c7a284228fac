"""Certified global-robustness bounds against the exact twin-network MILP, dense sampling
and joint PGD, on 240 random small networks: both relaxations, alpha, and after BaB."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from verifriend.bounds import from_module
from verifriend.globalrob.attack import joint_pgd, pair_value
from verifriend.globalrob.bab import GlobalBabSettings, global_bab
from verifriend.globalrob.difference import GlobalProblem, alpha_certificate, crown_certificate
from verifriend.globalrob.exact import twin_milp

TOL = 1e-6  # HiGHS's feasibility tolerance


def _network(gen: torch.Generator):
    """2-3 layers of 5-20 neurons (a few inputs), random weights; sometimes a conv."""
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    if int(torch.randint(0, 6, (1,), generator=gen)) == 0:
        model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 6),
                              nn.ReLU(), nn.Linear(6, 2))
        return from_module(model, (1, 3, 3))
    n_in = int(torch.randint(2, 5, (1,), generator=gen))
    depth = int(torch.randint(2, 4, (1,), generator=gen))
    layers, prev = [], n_in
    for _ in range(depth - 1):
        w = int(torch.randint(5, 11, (1,), generator=gen))
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, 2))
    return from_module(nn.Sequential(*layers), (n_in,))


def _sampled_max(graph, output: int, delta: float, gen: torch.Generator, n: int = 4000):
    """The largest |F(x') - F(x)| over random pairs, x' at random corners of the delta box
    (the certificate bounds the absolute change: the pair set is symmetric)."""
    x = torch.rand(n, *graph.input_shape, generator=gen, dtype=torch.float64)
    sign = torch.randint(0, 2, x.shape, generator=gen).to(torch.float64) * 2 - 1
    xp = (x + delta * sign).clamp(0, 1)
    return float(pair_value(graph, output, x, xp).abs().max())  # |F(x') - F(x)|


@pytest.mark.parametrize("chunk", range(12))
def test_certified_bounds_cover_exact_and_sampled(chunk):
    gen = torch.Generator().manual_seed(1000 + chunk)
    settings = GlobalBabSettings(batch=4, iterations=4, root_iterations=5, max_domains=16)
    for _ in range(20):
        graph = _network(gen)
        delta = float(torch.rand(1, generator=gen)) * 0.3 + 0.01
        output = int(torch.randint(0, 2, (1,), generator=gen))
        exact = twin_milp(graph, delta, output)
        assert exact.status == "optimal"
        # the MILP's pair is real, and nothing sampled or attacked beats the optimum
        assert float(pair_value(graph, output, exact.x[None], exact.x_prime[None])[0]) == \
            pytest.approx(exact.value, abs=1e-5)
        assert float((exact.x_prime - exact.x).abs().max()) <= delta + 1e-9
        attack = joint_pgd(graph, output, delta, random_starts=16, steps=10, generator=gen)
        low = max(_sampled_max(graph, output, delta, gen), attack.value)
        assert low <= exact.value + TOL
        for aware in (False, True):
            problem = GlobalProblem.build(graph, delta, input_aware=aware)
            crown_ub = float(crown_certificate(problem, [output])[0])
            alpha_ub = float(alpha_certificate(problem, [output], iterations=5)[0][0])
            bab = global_bab(problem, output, settings=settings)
            for name, ub in (("crown", crown_ub), ("alpha", alpha_ub), ("bab", bab.bound)):
                assert ub >= exact.value - TOL, (name, aware, ub, exact.value)
            assert bab.bound <= bab.root + 1e-12 and bab.root <= crown_ub + 1e-9


def test_maxpool_as_relus_is_the_same_function_and_sound():
    from verifriend.globalrob.maxpool import without_maxpool

    gen = torch.Generator().manual_seed(5)
    for k in range(2):
        torch.manual_seed(k)
        pool = nn.MaxPool2d(2, 2) if k % 2 else nn.MaxPool2d(3, 1)
        model = nn.Sequential(nn.Conv2d(1, 1, 2), nn.ReLU(), pool, nn.Flatten(),
                              nn.LazyLinear(2))
        model(torch.zeros(1, 1, 5, 5))
        graph = from_module(model, (1, 5, 5))
        x = torch.rand(64, 1, 5, 5, generator=gen)
        assert torch.allclose(without_maxpool(graph)(x), graph(x), atol=1e-6)
        exact = twin_milp(graph, 0.1, 0)  # the MILP encodes the max pool natively
        assert exact.status == "optimal"
        for aware in (False, True):
            problem = GlobalProblem.build(graph, 0.1, input_aware=aware)
            assert float(crown_certificate(problem, [0])[0]) >= exact.value - TOL
            if aware == bool(k):  # branch and bound on one relaxation per network
                res = global_bab(problem, 0, settings=GlobalBabSettings(
                    batch=2, iterations=3, root_iterations=3, max_domains=6))
                assert res.bound >= exact.value - TOL


def test_input_aware_is_never_looser_and_often_tighter():
    gen = torch.Generator().manual_seed(7)
    tighter = 0
    for _ in range(20):
        graph = _network(gen)
        free = crown_certificate(GlobalProblem.build(graph, 0.05, input_aware=False), [0, 1])
        aware = crown_certificate(GlobalProblem.build(graph, 0.05, input_aware=True), [0, 1])
        assert bool((aware <= free + 1e-12).all())
        tighter += int((aware < free - 1e-6).any())
    assert tighter >= 10


def test_bab_tightens_and_a_floor_prunes():
    """BaB closes much of the root's gap to the exact value on average; a floor at or
    above a leaf's bound drops it, and a floor above the root leaves nothing to split."""
    gen = torch.Generator().manual_seed(3)
    closed = []
    for _ in range(10):
        graph = _network(gen)
        exact = twin_milp(graph, 0.1, 0).value
        problem = GlobalProblem.build(graph, 0.1, input_aware=False)
        res = global_bab(problem, 0, settings=GlobalBabSettings(batch=8, max_domains=300))
        assert res.bound >= exact - TOL
        if res.root > exact + 1e-6:
            closed.append((res.root - res.bound) / (res.root - exact))
        pruned = global_bab(problem, 0, floor=res.root + 1.0)
        assert pruned.exhausted and pruned.bound == res.root + 1.0 and pruned.domains == 1
    assert sum(closed) / len(closed) > 0.3


def test_bab_trace_is_anytime_and_monotone():
    graph = _network(torch.Generator().manual_seed(11))
    problem = GlobalProblem.build(graph, 0.2, input_aware=False)
    seen = []
    res = global_bab(problem, 1, settings=GlobalBabSettings(batch=4, max_domains=200),
                     on_improve=lambda t, b, d: seen.append(b))
    assert seen == [b for _, b, _ in res.trace] and seen[0] == pytest.approx(res.root)
    assert all(b2 < b1 for b1, b2 in itertools.pairwise(seen))
    assert res.bound == seen[-1] and math.isfinite(res.bound)
