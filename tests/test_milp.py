"""MILP / LP-relaxation encodings (HiGHS) against enumeration, sampling and alpha-CROWN."""

from __future__ import annotations

import itertools
import math

import highspy
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

from verifriend.bounds import Graph, crown, linf_box
from verifriend.bounds.alpha_crown import alpha_crown
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.splits import Splits
from verifriend.errors import UnsupportedLayerError, UserError
from verifriend.models.layers import Residual
from verifriend.verify.milp import encode, milp_bounds

# ---------------------------------------------------------------- oracles


def tiny_net(seed: int, widths: tuple[int, ...]) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def pattern_min(g: Graph, lo: np.ndarray, hi: np.ndarray, c: np.ndarray, pattern) -> float:
    """min c . f(x) over the box and the linear region of one activation pattern (+inf if empty).

    ``pattern`` is one 0/1 array per hidden layer (1: z >= 0, the neuron passes z).
    """
    W = [n.weight.double().numpy() for n in g.nodes if hasattr(n, "weight")]
    b = [n.bias.double().numpy() for n in g.nodes if hasattr(n, "bias")]
    n_in = W[0].shape[1]
    M, k = np.eye(n_in), np.zeros(n_in)  # current layer's value = M x + k
    rows, rhs = [], []
    for Wi, bi, p in zip(W, b, [*pattern, None]):
        M, k = Wi @ M, Wi @ k + bi
        if p is None:
            break
        s = 2.0 * p - 1.0
        rows.append(s[:, None] * M)  # s * z >= 0
        rhs.append(-(s * k))
        M, k = p[:, None] * M, p * k
    A, lb = np.concatenate(rows), np.concatenate(rhs)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVars(n_in, lo, hi)
    h.changeColsCost(n_in, np.arange(n_in, dtype=np.int32), c @ M)
    starts = np.arange(0, A.size, n_in, dtype=np.int32)
    index = np.tile(np.arange(n_in, dtype=np.int32), A.shape[0])
    h.addRows(
        A.shape[0], lb, np.full(A.shape[0], highspy.kHighsInf), A.size, starts, index, A.ravel()
    )
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return math.inf
    assert status == highspy.HighsModelStatus.kOptimal
    return h.getInfo().objective_function_value + float(c @ k)


def enumerate_min(g: Graph, lo, hi, c, fixed: dict | None = None) -> float:
    """min c . f(x) over the box by enumerating every activation pattern.

    ``fixed`` maps (hidden layer, neuron) to the forced pattern bit (a split).
    """
    widths = [g.nodes[r].shape[0] for r in g.relu_nodes()]
    flat = [(i, j) for i, w in enumerate(widths) for j in range(w)]
    best = math.inf
    for bits in itertools.product((0.0, 1.0), repeat=len(flat)):
        if fixed and any(bits[flat.index(key)] != v for key, v in fixed.items()):
            continue
        pattern = [np.zeros(w) for w in widths]
        for (i, j), bit in zip(flat, bits):
            pattern[i][j] = bit
        best = min(best, pattern_min(g, lo, hi, c, pattern))
    return best


def problem(seed: int, widths, eps: float):
    g = from_module(tiny_net(seed, widths), (widths[0],))
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(1, widths[0], generator=gen, dtype=torch.float64)
    lo, hi = linf_box(x, eps, -10.0, 10.0)
    c = torch.randn(widths[-1], generator=gen, dtype=torch.float64)
    return g, lo, hi, c


def check_point(g: Graph, lo, hi, c, res, tol=1e-6):
    """The returned input lies in the box and attains the reported value."""
    x = res.x.double().unsqueeze(0)
    assert torch.all(x >= lo) and torch.all(x <= hi)
    assert abs(float(c @ g(x)[0]) - res.value) < tol


nets = st.tuples(
    st.integers(0, 10_000),
    st.integers(2, 4),
    st.integers(3, 4),
    st.integers(3, 4),
    st.integers(1, 3),
    st.sampled_from([0.3, 1.0, 2.0]),
)
FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- exact minimum


@FAST
@given(nets)
def test_milp_equals_enumeration_and_x_attains_it(p):
    seed, n_in, h1, h2, n_out, eps = p
    g, lo, hi, c = problem(seed, (n_in, h1, h2, n_out), eps)
    model = encode(g, lo, hi, crown(g, lo, hi).intervals)
    res = model.minimize(c)
    exact = enumerate_min(g, lo[0].numpy(), hi[0].numpy(), c.numpy())
    assert res.status == "optimal"
    assert abs(res.value - exact) < 1e-6
    assert res.bound <= res.value + 1e-9
    check_point(g, lo, hi, c, res)
    # the one-call API agrees (its bounds are CROWN's too, in float64)
    got = milp_bounds(g, lo, hi, c.view(1, -1))
    assert abs(float(got[0, 0]) - exact) < 1e-6


@FAST
@given(nets)
@example((19, 3, 4, 4, 2, 2.0))  # alpha-CROWN's default early stop is 0.02 short here
def test_lp_relaxation_between_crown_and_milp_and_equals_optimal_alpha(p):
    seed, n_in, h1, h2, n_out, eps = p
    g, lo, hi, c = problem(seed, (n_in, h1, h2, n_out), eps)
    C = c.view(1, 1, -1)
    b = crown(g, lo, hi, C)
    lp = encode(g, lo, hi, b.intervals, relax=True).minimize(c)
    milp = encode(g, lo, hi, b.intervals).minimize(c)
    assert lp.status == milp.status == "optimal"
    assert lp.value <= milp.value + 1e-7
    assert lp.value >= float(b.lower[0, 0]) - 1e-6
    # optimal single-neuron slopes with fixed intermediate bounds = triangle LP. The
    # default early stop (patience 5, tol 1e-4) and lr decay 0.98 leave alpha up to
    # ~0.02 short on such nets; run all 300 steps with a slower decay (worst gap
    # seen over 90 nets: 2e-4)
    a, _ = alpha_crown(
        g,
        lo,
        hi,
        C,
        intermediate=False,
        iterations=300,
        lr=0.1,
        lr_decay=0.995,
        patience=10**6,
        tol=0.0,
    )
    assert float(a.lower[0, 0]) <= lp.value + 1e-6  # alpha-CROWN is a (sound) LP dual
    assert lp.value - float(a.lower[0, 0]) < 1e-3


def test_lp_relaxation_is_exact_without_unstable_neurons():
    # a box so small that every neuron is stable: LP = MILP = the affine map's min
    g, lo, hi, c = problem(3, (3, 5, 5, 2), 1e-4)
    b = crown(g, lo, hi)
    lp = encode(g, lo, hi, b.intervals, relax=True)
    assert lp.num_binaries == 0
    milp = encode(g, lo, hi, b.intervals)
    assert milp.num_binaries == 0
    v1, v2 = lp.minimize(c).value, milp.minimize(c).value
    assert abs(v1 - v2) < 1e-9
    assert abs(v1 - enumerate_min(g, lo[0].numpy(), hi[0].numpy(), c.numpy())) < 1e-6


def test_a_highs_solve_error_is_retried_then_undecided(monkeypatch):
    """HiGHS 1.16 reports "Solve error" when its MIP answer breaks a row by its own
    tolerance: the solve is tried again without presolve, and if that fails too the
    result is "error" with no value, point or bound to trust (never a crash, never a
    verdict)."""
    g, lo, hi, c = problem(4, (2, 9, 3), 0.5)
    model = encode(g, lo, hi, crown(g, lo, hi).intervals)
    truth = model.minimize(c)
    assert truth.status == "optimal"
    calls = []
    real = highspy.Highs.getModelStatus

    def fails(self, first_only):
        calls.append(1)
        if first_only and len(calls) > 1:
            return real(self)
        return highspy.HighsModelStatus.kSolveError

    monkeypatch.setattr(highspy.Highs, "getModelStatus", lambda self: fails(self, True))
    again = model.minimize(c)
    assert again.status == "optimal" and abs(again.value - truth.value) < 1e-9
    assert len(calls) == 2
    monkeypatch.setattr(highspy.Highs, "getModelStatus", lambda self: fails(self, False))
    bad = model.minimize(c)
    assert bad.status == "error" and bad.x is None
    assert bad.value == math.inf and bad.bound == -math.inf


# ---------------------------------------------------------------- conv and other nodes


def sampled_min(g: Graph, lo, hi, C, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(n, *lo.shape[1:], generator=gen, dtype=lo.dtype)
    return (g(x) @ C[0].T).min(0).values


def test_conv_net_between_crown_and_sampling():
    torch.manual_seed(5)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(27, 3),
    ).double()
    g = from_module(net, (1, 5, 5))
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    lo, hi = linf_box(x, 0.3)
    C = torch.randn(1, 2, 3, dtype=torch.float64)
    b = crown(g, lo, hi, C)
    got = milp_bounds(g, lo, hi, C)
    sampled = sampled_min(g, lo, hi, C, 20_000, 6)
    assert torch.all(got[0] <= sampled + 1e-6)
    assert torch.all(got[0] >= b.lower[0] - 1e-6)
    model = encode(g, lo, hi, b.intervals)
    assert model.num_binaries > 0  # the test exercises real branching
    for i in range(2):
        res = model.minimize(C[0, i])
        check_point(g, lo, hi, C[0, i], res)


def test_affine_avgpool_residual_nodes_attain_their_value():
    torch.manual_seed(7)
    bn = nn.BatchNorm2d(2)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    net = (
        nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1),
            bn,
            nn.ReLU(),
            Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU())),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8, 2),
        )
        .double()
        .eval()
    )
    g = from_module(net, (1, 4, 4))
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    lo, hi = linf_box(x, 0.2)
    C = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]], dtype=torch.float64)
    b = crown(g, lo, hi, C)
    model = encode(g, lo, hi, b.intervals)
    sampled = sampled_min(g, lo, hi, C, 20_000, 8)
    for i in range(2):
        res = model.minimize(C[0, i])
        assert res.status == "optimal"
        assert b.lower[0, i] - 1e-6 <= res.value <= sampled[i] + 1e-6
        check_point(g, lo, hi, C[0, i], res)


@pytest.mark.parametrize("relax", [False, True])
def test_maxpool_between_crown_and_sampling(relax):
    torch.manual_seed(9)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(8, 2),
    ).double()
    g = from_module(net, (1, 4, 4))
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    lo, hi = linf_box(x, 0.15)
    C = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]], dtype=torch.float64)
    b = crown(g, lo, hi, C)
    got = milp_bounds(g, lo, hi, C, relax=relax)
    assert torch.all(got[0] <= sampled_min(g, lo, hi, C, 20_000, 10) + 1e-6)
    if not relax:  # CROWN's MaxPool relaxation differs from this LP's, only the MILP is tighter
        assert torch.all(got[0] >= b.lower[0] - 1e-6)
        for i in range(2):
            check_point(g, lo, hi, C[0, i], encode(g, lo, hi, b.intervals).minimize(C[0, i]))


# ---------------------------------------------------------------- splits


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([-1, 1]), st.booleans())
def test_split_gives_min_over_its_region(seed, sign, relax_all):
    g, lo, hi, c = problem(seed, (3, 4, 3, 2), 1.0)
    D = 1
    splits = Splits.empty(g, D)
    r1, r2 = g.relu_nodes()
    layer, r = (0, r1) if seed % 2 else (1, r2)
    neuron = seed % g.nodes[r].shape[0]
    splits = splits.with_split(torch.tensor([0]), r, torch.tensor([neuron]), sign)
    fixed = {(layer, neuron): 1.0 if sign > 0 else 0.0}
    exact = enumerate_min(g, lo[0].numpy(), hi[0].numpy(), c.numpy(), fixed)
    got = float(milp_bounds(g, lo, hi, c.view(1, -1), splits=splits)[0, 0])
    assert abs(got - exact) < 1e-6 or (math.isinf(exact) and math.isinf(got))
    if relax_all and math.isfinite(exact):
        # every neuron split along an optimal point's pattern: the LP is the region's min
        b = crown(g, lo, hi)
        res = encode(g, lo, hi, b.intervals, splits).minimize(c)
        full = Splits.from_point(g, res.x.unsqueeze(0))
        # x may sit on the split's boundary (within tolerance): keep the split's sign
        full.signs[r].view(-1)[neuron] = sign
        lp = float(milp_bounds(g, lo, hi, c.view(1, -1), splits=full, relax=True)[0, 0])
        pattern = [(full.signs[q][0] > 0).double().numpy() for q in g.relu_nodes()]
        assert abs(lp - pattern_min(g, lo[0].numpy(), hi[0].numpy(), c.numpy(), pattern)) < 1e-6
        assert abs(lp - res.value) < 1e-6


def test_infeasible_splits():
    # neuron b computes -z_a - 1: z_a >= 0 and z_b >= 0 contradict, each alone is fine
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -1.0]))
    g = from_module(net, (2,))
    lo, hi = torch.full((1, 2), -1.0, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    r = g.relu_nodes()[0]
    both = Splits({r: torch.tensor([[1, 1]], dtype=torch.int8)})
    one = Splits({r: torch.tensor([[1, 0]], dtype=torch.int8)})
    c = torch.ones(1, dtype=torch.float64)
    b = crown(g, lo, hi)
    for relax in (False, True):
        res = encode(g, lo, hi, b.intervals, both, relax=relax).minimize(c)
        assert res.status == "infeasible" and res.value == math.inf and res.x is None
        assert encode(g, lo, hi, b.intervals, one, relax=relax).minimize(c).status == "optimal"
    assert float(milp_bounds(g, lo, hi, c.view(1, 1), splits=both)[0, 0]) == math.inf
    # a split against a stable neuron: the clamped bounds cross
    lo2, hi2 = torch.full((1, 2), 0.5, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    stable = Splits({r: torch.tensor([[-1, 0]], dtype=torch.int8)})  # z_a >= 1 > 0
    assert float(milp_bounds(g, lo2, hi2, c.view(1, 1), splits=stable)[0, 0]) == math.inf


# ---------------------------------------------------------------- limits and errors


def test_time_limit_reports_a_valid_bound():
    torch.manual_seed(11)
    net = tiny_net(11, (10, 60, 60, 60, 5))
    g = from_module(net, (10,))
    lo, hi = linf_box(torch.zeros(1, 10, dtype=torch.float64), 1.0, -10, 10)
    c = torch.randn(5, dtype=torch.float64)
    b = crown(g, lo, hi, c.view(1, 1, -1))
    model = encode(g, lo, hi, b.intervals)
    res = model.minimize(c, time_limit=0.05)
    assert res.status == "time_limit"
    assert res.bound <= res.value
    if res.x is not None:
        check_point(g, lo, hi, c, res, tol=1e-5)


def test_errors():
    g, lo, hi, _ = problem(1, (3, 4, 4, 2), 0.5)
    b = crown(g, lo, hi)
    with pytest.raises(UserError, match="spec matrix"):
        milp_bounds(g, lo, hi, torch.ones(1, 1, 3, dtype=torch.float64))
    with pytest.raises(UserError, match="domain 1 is out of range"):
        encode(g, lo, hi, b.intervals, domain=1)
    with pytest.raises(UserError, match="does not match the 2 outputs"):
        encode(g, lo, hi, b.intervals).minimize(torch.ones(3))
    with pytest.raises(UserError, match="intervals hold"):
        encode(g, lo, hi, b.intervals[:-1])
    gs = from_module(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()).double(), (2,))
    lo2, hi2 = torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    with pytest.raises(UnsupportedLayerError, match="no MILP encoding"):
        milp_bounds(gs, lo2, hi2, None)


def test_feasible_affine_chain_is_not_called_infeasible():
    """Regression: HiGHS's presolve called this all-stable (purely affine) model infeasible."""
    g, lo, hi, c = problem(128, (2, 3, 3, 1), 0.3)
    res = encode(g, lo, hi, crown(g, lo, hi).intervals).minimize(c)
    assert res.status == "optimal"
    check_point(g, lo, hi, c, res)


def test_the_milp_prints_nothing(tmp_path):
    """HiGHS writes a banner when a process makes its first instance: none reaches stdout."""
    import subprocess
    import sys

    script = tmp_path / "m.py"
    script.write_text(
        "import torch\nfrom torch import nn\n"
        "from verifriend.bounds.frontends.torch import from_module\n"
        "from verifriend.verify.milp import milp_bounds\n"
        "g = from_module(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double(), (2,))\n"
        "one = torch.ones(1, 2, dtype=torch.float64)\n"
        "print('bound', float(milp_bounds(g, -one, one, None)[0, 0]))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("bound ") and "HiGHS" not in out.stdout + out.stderr
