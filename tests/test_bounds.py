"""IBP and CROWN: soundness against sampling, exactness oracles, hand-computed values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_graph import networks, random_bn
from torch import nn

from verifriend.bounds import (
    compute_bounds,
    crown,
    crown_intervals,
    ibp,
    linf_box,
    robustness_spec,
    spec_crown,
    stable_mask,
    stable_ratio,
    unstable_counts,
)
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.ops import relu_relaxation
from verifriend.errors import UserError
from verifriend.models.layers import Normalize, Residual

F64 = torch.float64


def sample_box(lo: torch.Tensor, hi: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points per box (B, n, *shape): uniform ones, random vertices, and the two corners."""
    B, shape = lo.shape[0], lo.shape[1:]
    n_vert = n // 5
    u = torch.rand(B, n - n_vert - 2, *shape, generator=gen, dtype=lo.dtype)
    v = torch.randint(0, 2, (B, n_vert, *shape), generator=gen).to(lo.dtype)
    t = torch.cat([u, v, torch.zeros_like(u[:, :1]), torch.ones_like(u[:, :1])], 1)
    return lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * t


def assert_contains(lower, upper, values, tol):
    """values (B, N, ...) lie in [lower, upper] (B, ...) up to tol."""
    lo, up = lower.unsqueeze(1), upper.unsqueeze(1)
    assert bool((values >= lo - tol).all()), float((lo - values).max())
    assert bool((values <= up + tol).all()), float((values - up).max())


def check_sound(net: nn.Module, shape, eps: float, seed: int, dtype, tol: float, n: int):
    """Sample n inputs per box and check IBP/CROWN final and pre-ReLU bounds contain them."""
    net = net.to(dtype)
    graph = from_module(net, shape)
    gen = torch.Generator().manual_seed(seed)
    B, m = 2, 3
    lo, hi = linf_box(torch.rand(B, *shape, generator=gen, dtype=dtype), eps)
    C = torch.randn(B, m, graph.num_outputs, generator=gen, dtype=dtype)
    ib, cr = ibp(graph, lo, hi, C), crown(graph, lo, hi, C)

    xs = sample_box(lo, hi, n, gen)
    with torch.no_grad():
        values = graph.forward_all(xs.flatten(0, 1))
        out = net(xs.flatten(0, 1)).view(B, n, -1)
    spec = torch.einsum("bmo,bno->bnm", C, out)
    relus = graph.relu_nodes()
    for b in (ib, cr):
        assert b.lower.shape == b.upper.shape == (B, m)
        assert_contains(b.lower, b.upper, spec, tol)
        assert len(b.pre_relu) == len(relus)
        for (pl, pu), r in zip(b.pre_relu, relus):
            z = values[graph.nodes[r].inputs[0]].view(B, n, *pl.shape[1:])
            assert_contains(pl, pu, z, tol)

    # CROWN is intersected with IBP: never looser, exactly
    assert bool((cr.lower >= ib.lower).all()) and bool((cr.upper <= ib.upper).all())
    for (cl, cu), (il, iu) in zip(cr.pre_relu, ib.pre_relu):
        assert bool((cl >= il).all()) and bool((cu <= iu).all())
    return graph, lo, hi, C, cr


@settings(max_examples=80, deadline=None)
@given(networks(), st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.01, 0.05, 0.3]))
def test_bounds_contain_sampled_outputs_float64(case, seed, eps):
    net, shape = case
    check_sound(net, shape, eps, seed, F64, 1e-9, 10_000)


@settings(max_examples=8, deadline=None)
@given(networks(), st.integers(0, 2**31 - 1))
def test_bounds_contain_sampled_outputs_float32(case, seed):
    net, shape = case
    check_sound(net, shape, 0.05, seed, torch.float32, 1e-4, 5000)


def maxpool_residual_net() -> nn.Sequential:
    torch.manual_seed(3)
    net = nn.Sequential(
        Normalize([0.4, 0.5], [0.3, 0.2]),
        nn.Conv2d(2, 4, 3, 1, 1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        Residual(
            nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1), nn.ReLU(), nn.Conv2d(4, 3, 3, 1, 1)),
            nn.Sequential(nn.Conv2d(4, 3, 1)),
        ),
        nn.ReLU(),
        nn.AvgPool2d(2, 1),
        nn.Conv2d(3, 3, 2, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12, 10),
        nn.ReLU(),
        nn.Linear(10, 4),
    )
    return net.eval()


def test_sound_on_maxpool_residual_network_with_10000_samples():
    check_sound(maxpool_residual_net(), (2, 8, 8), 0.05, 0, F64, 1e-9, 10_000)


def test_chunking_and_row_selection_do_not_change_results():
    net = maxpool_residual_net().double()
    graph = from_module(net, (2, 8, 8))
    x = torch.rand(5, 2, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    lo, hi = linf_box(x, 0.05)
    C = robustness_spec(torch.tensor([0, 1, 2, 3, 0]), 4, dtype=F64)
    ref = crown(graph, lo, hi, C)
    tiny = crown(graph, lo, hi, C, max_elements=20_000)  # a few rows per sweep
    assert torch.allclose(ref.lower, tiny.lower, atol=1e-10)
    assert torch.allclose(ref.upper, tiny.upper, atol=1e-10)
    for (a, b), (c, d) in zip(ref.pre_relu, tiny.pre_relu):
        assert torch.allclose(a, c, atol=1e-10) and torch.allclose(b, d, atol=1e-10)
    # the batch is independent: bounding one sample alone gives the same answer
    one = crown(graph, lo[2:3], hi[2:3], C[2:3])
    assert torch.allclose(one.lower, ref.lower[2:3], atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    networks(max_conv_layers=6, max_fc_layers=1, kinds=("conv", "conv", "relu", "bn")),
    st.integers(0, 2**31 - 1),
)
def test_patch_mode_equals_dense_back_substitution(case, seed):
    net, shape = case
    graph = from_module(net.double(), shape)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = linf_box(torch.rand(3, *shape, generator=gen, dtype=F64), 0.1)
    a = crown(graph, lo, hi)
    b = crown(graph, lo, hi, use_patches=False)
    for (al, au), (bl, bu) in zip(
        a.pre_relu + [(a.lower, a.upper)], b.pre_relu + [(b.lower, b.upper)]
    ):
        assert torch.allclose(al, bl, atol=1e-9) and torch.allclose(au, bu, atol=1e-9)


def test_patch_mode_on_strided_padded_conv_chain():
    """A deeper chain where patches cover parts of the map only (the fast path)."""
    torch.manual_seed(4)
    net = nn.Sequential(
        Normalize([0.5], [0.3]),
        nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(4, 4, 4, 2, 1), random_bn(nn.BatchNorm2d, 4, torch.Generator()), nn.ReLU(),
        nn.Conv2d(4, 3, 3, 1, 2, dilation=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 6 * 6, 3),
    ).eval().double()  # fmt: skip
    graph = from_module(net, (1, 12, 12))
    lo, hi = linf_box(torch.rand(4, 1, 12, 12, dtype=F64), 0.05)
    a = crown(graph, lo, hi)
    b = crown(graph, lo, hi, use_patches=False)
    assert sum(int(c.sum()) for c in unstable_counts(a)) > 0
    for (al, au), (bl, bu) in zip(a.pre_relu, b.pre_relu):
        assert torch.allclose(al, bl, atol=1e-10) and torch.allclose(au, bu, atol=1e-10)
    assert torch.allclose(a.lower, b.lower, atol=1e-10)
    check_sound(net, (1, 12, 12), 0.05, 7, F64, 1e-9, 5000)


# ---------------------------------------------------------------- exactness oracles


def _vertex_oracle(net, lo, hi, C, center):
    """Exact min/max of the locally affine C @ net(x) over the box, evaluated at vertices.

    The Jacobian at ``center`` gives each row's gradient; the minimizing vertex takes
    ``lo`` where the gradient is positive. Returns (min, max) values of the real network
    at those vertices, each (B, m).
    """
    B = lo.shape[0]
    mins, maxs = [], []
    for b in range(B):
        J = torch.autograd.functional.jacobian(lambda x: net(x.unsqueeze(0))[0], center[b])
        g = torch.einsum("mo,o...->m...", C[b], J)  # (m, *shape)
        v_min = torch.where(g > 0, lo[b], hi[b])
        v_max = torch.where(g > 0, hi[b], lo[b])
        with torch.no_grad():
            mins.append(torch.einsum("mo,mo->m", C[b], net(v_min)))
            maxs.append(torch.einsum("mo,mo->m", C[b], net(v_max)))
    return torch.stack(mins), torch.stack(maxs)


def test_crown_and_ibp_exact_on_affine_network():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        Normalize([0.2, 0.4], [0.5, 0.3]),
        nn.Conv2d(2, 3, 3, 2, 1),
        random_bn(nn.BatchNorm2d, 3, gen),
        nn.AvgPool2d(2, 1, 1),
        nn.Flatten(),
        nn.Linear(3 * 5 * 5, 6),
        random_bn(nn.BatchNorm1d, 6, gen),
        nn.Linear(6, 4),
    )
    net = net.eval().double()
    graph = from_module(net, (2, 7, 7))
    x = torch.rand(3, 2, 7, 7, dtype=F64, generator=gen)
    lo, hi = linf_box(x, 0.1)
    C = torch.randn(3, 5, 4, dtype=F64, generator=gen)
    want_lo, want_hi = _vertex_oracle(net, lo, hi, C, x)
    for b in (crown(graph, lo, hi, C), ibp(graph, lo, hi, C)):  # IBP folds C to the input
        assert torch.allclose(b.lower, want_lo, atol=1e-9)
        assert torch.allclose(b.upper, want_hi, atol=1e-9)


def test_crown_exact_when_all_neurons_are_stable():
    gen = torch.Generator().manual_seed(5)
    net = maxpool_residual_net().double()
    graph = from_module(net, (2, 8, 8))
    x = torch.rand(2, 2, 8, 8, dtype=F64, generator=gen)
    lo, hi = x - 1e-6, x + 1e-6
    C = torch.randn(2, 3, 4, dtype=F64, generator=gen)
    b = crown(graph, lo, hi, C)
    assert int(unstable_counts(b).sum()) == 0
    assert bool((stable_ratio(b) == 1).all())
    want_lo, want_hi = _vertex_oracle(net, lo, hi, C, x)
    assert torch.allclose(b.lower, want_lo, atol=1e-10, rtol=0)
    assert torch.allclose(b.upper, want_hi, atol=1e-10, rtol=0)


def test_crown_on_2d_relu_network_is_below_grid_minimum():
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 1)
    ).double()
    graph = from_module(net, (2,))
    lo = torch.tensor([[-1.0, -0.5]], dtype=F64)
    hi = torch.tensor([[0.5, 1.0]], dtype=F64)
    t = torch.linspace(0, 1, 401, dtype=F64)
    grid = torch.cartesian_prod(t, t) * (hi - lo) + lo
    with torch.no_grad():
        vals = net(grid)
    b = crown(graph, lo, hi)
    assert float(b.lower) <= float(vals.min()) + 1e-12
    assert float(b.upper) >= float(vals.max()) - 1e-12
    ib = ibp(graph, lo, hi)
    assert float(b.upper - b.lower) < float(ib.upper - ib.lower)


def deeppoly_example() -> nn.Sequential:
    """The network of the DeepPoly paper's running example (Singh et al., POPL 2019)."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        net[4].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
        net[0].bias.zero_()
        net[2].bias.zero_()
        net[4].bias.copy_(torch.tensor([1.0, 0.0]))
    return net


def test_hand_computed_crown_and_ibp_values():
    """x1, x2 in [-1, 1]; x3,4 = x1 +- x2; x5,6 = relu; x7,8 = x5 +- x6; x9,10 = relu;
    x11 = x9 + x10 + 1, x12 = x10.

    By hand: x3, x4 in [-2, 2] (unstable; u = -l so the lower slope is 0, upper line
    0.5 z + 1). x7 = x5 + x6 >= 0, so x9 = x7 is stable. x8 = x5 - x6 is in [-2, 2] by
    both methods (CROWN: -0.5(x1 - x2) - 1 >= -2 and 0.5(x1 + x2) + 1 <= 2).
    CROWN:  x11 - x12 = x7 + 1 in [1, 4] (x7 <= 0.5x3 + 0.5x4 + 2 = x1 + 2);
            x11 = x7 + x10 + 1 <= 1.5 x5 + 0.5 x6 + 2 <= x1 + 0.5 x2 + 4 <= 5.5, >= 1;
            x12 = x10 <= 0.5 x8 + 1 <= 0.25(x1 + x2) + 1.5 <= 2, >= 0.
    IBP: x7 in [0, 4], x9 in [0, 4], x10 in [0, 2]; elided rows: x9 + 1 in [1, 5],
         x11 in [1, 7], x12 in [0, 2].
    """
    graph = from_module(deeppoly_example(), (2,))
    lo, hi = -torch.ones(1, 2), torch.ones(1, 2)
    C = torch.tensor([[[1.0, -1.0], [1.0, 0.0], [0.0, 1.0]]])
    cr = crown(graph, lo, hi, C)
    assert torch.allclose(cr.lower, torch.tensor([[1.0, 1.0, 0.0]]), atol=1e-6)
    assert torch.allclose(cr.upper, torch.tensor([[4.0, 5.5, 2.0]]), atol=1e-6)
    ib = ibp(graph, lo, hi, C)
    assert torch.allclose(ib.lower, torch.tensor([[1.0, 1.0, 0.0]]), atol=1e-6)
    assert torch.allclose(ib.upper, torch.tensor([[5.0, 7.0, 2.0]]), atol=1e-6)
    (l1, u1), (l2, u2) = cr.pre_relu
    assert torch.equal(l1, torch.tensor([[-2.0, -2.0]])) and torch.equal(u1, -l1)
    assert torch.allclose(l2, torch.tensor([[0.0, -2.0]])) and float(u2[0, 1]) == 2.0
    # 3 of 4 neurons unstable: x3, x4, x8
    assert unstable_counts(cr).tolist() == [[2, 1]]
    assert stable_mask(cr).tolist() == [[False, False, True, False]]
    assert float(stable_ratio(cr)) == pytest.approx(0.25)
    # the true minimum of x11 - x12 is 1 (at x = 0): CROWN is exact there
    with torch.no_grad():
        assert float(deeppoly_example()(torch.zeros(1, 2)) @ C[0, 0]) == pytest.approx(1.0)


def test_relu_relaxation_values():
    lower = torch.tensor([-1.0, -2.0, -2.0, 0.5, -3.0, 0.0])
    upper = torch.tensor([2.0, 1.0, 2.0, 1.0, -1.0, 0.0])
    lo, up, icpt = relu_relaxation(lower, upper)
    # unstable: upper line through (l, 0) and (u, u); lower slope 1 iff u > -l
    assert torch.allclose(up, torch.tensor([2 / 3, 1 / 3, 0.5, 1.0, 0.0, 1.0]))
    assert torch.allclose(icpt, torch.tensor([2 / 3, 2 / 3, 1.0, 0.0, 0.0, 0.0]))
    assert lo.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    alpha = torch.tensor([0.3, 1.7, -0.2, 0.3, 0.3, 0.3])
    lo, _, _ = relu_relaxation(lower, upper, alpha)
    assert torch.allclose(lo, torch.tensor([0.3, 1.0, 0.0, 1.0, 0.0, 1.0]))  # stable stay exact


@pytest.mark.parametrize("box", [(-1.0, 2.0), (-2.0, 1.0)])
def test_adaptive_lower_slope_in_crown(box):
    """f(x) = relu(x) - x / 2 (relu(x + 10) carries the linear part); true range [0, 1].

    Box [-1, 2]: u > -l, lower line y >= x gives f >= x / 2 >= -0.5 (slope 0: -1);
    upper line y <= 2x/3 + 2/3 gives f <= x / 6 + 2 / 3 <= 1.
    Box [-2, 1]: lower line y >= 0 gives f >= -x / 2 >= -0.5 (slope 1: -1);
    upper line y <= x/3 + 2/3 gives f <= -x / 6 + 2 / 3 <= 1.
    The raw CROWN pass (no IBP intersection) must produce exactly these.
    """
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, 10.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -0.5]]))
        net[2].bias.fill_(5.0)
    graph = from_module(net, (1,))
    lo, hi = torch.tensor([[box[0]]]), torch.tensor([[box[1]]])
    raw_lo, raw_hi = spec_crown(graph, crown_intervals(graph, lo, hi), torch.ones(1, 1, 1))
    assert float(raw_lo) == pytest.approx(-0.5, abs=1e-6)
    assert float(raw_hi) == pytest.approx(1.0, abs=1e-6)
    b = crown(graph, lo, hi)
    assert (float(b.lower), float(b.upper)) == pytest.approx((-0.5, 1.0), abs=1e-6)


def test_crown_tighter_than_ibp_on_random_fc_network():
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 5)
    )
    graph = from_module(net, (20,))
    lo, hi = linf_box(torch.rand(30, 20), 0.05)
    cr, ib = crown(graph, lo, hi), ibp(graph, lo, hi)
    w_cr, w_ib = (cr.upper - cr.lower).mean(), (ib.upper - ib.lower).mean()
    assert float(w_cr) < 0.8 * float(w_ib)
    # second-layer pre-activations get tightened as well
    assert float((cr.pre_relu[1][1] - cr.pre_relu[1][0]).mean()) < float(
        (ib.pre_relu[1][1] - ib.pre_relu[1][0]).mean()
    )


def test_bounds_are_differentiable_for_training():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    graph = from_module(net, (4,), detach=False)
    lo, hi = linf_box(torch.rand(5, 4), 0.1)
    for method in ("ibp", "crown"):
        net.zero_grad()
        b = compute_bounds(graph, lo, hi, robustness_spec(torch.zeros(5), 3), method=method)
        b.lower.sum().backward()
        assert net[0].weight.grad is not None and bool(net[0].weight.grad.abs().sum() > 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    net = maxpool_residual_net()
    graph = from_module(net, (2, 8, 8))
    lo, hi = linf_box(torch.rand(4, 2, 8, 8), 0.03)
    ref = crown(graph, lo, hi)
    got = crown(graph.to("cuda"), lo.cuda(), hi.cuda())
    assert torch.allclose(got.lower.cpu(), ref.lower, atol=1e-4)
    assert torch.allclose(got.upper.cpu(), ref.upper, atol=1e-4)


# ---------------------------------------------------------------- API and helpers


def test_compute_bounds_dispatch_and_errors():
    net = deeppoly_example()
    graph = from_module(net, (2,))
    lo, hi = -torch.ones(1, 2), torch.ones(1, 2)
    assert compute_bounds(graph, lo, hi, method="ibp").method == "ibp"
    converted = compute_bounds(net, lo, hi)  # a module is converted on the fly
    assert converted.method == "crown"
    assert torch.allclose(converted.upper, crown(graph, lo, hi).upper)
    with pytest.raises(UserError, match="unknown bound method"):
        compute_bounds(graph, lo, hi, method="lp")
    with pytest.raises(UserError, match="exceed"):
        crown(graph, hi, lo)
    with pytest.raises(UserError, match="shape"):
        crown(graph, torch.zeros(1, 3), torch.ones(1, 3))
    with pytest.raises(UserError, match="spec matrix"):
        crown(graph, lo, hi, torch.ones(1, 2, 5))
    with pytest.raises(UserError, match="float64"):
        crown(graph, lo.double(), hi.double())
    shared = crown(graph, lo, hi, torch.tensor([[1.0, -1.0]]))  # (m, n) shared by the batch
    assert shared.lower.shape == (1, 1) and float(shared.lower) == pytest.approx(1.0)


def test_linf_box_clips_and_broadcasts():
    x = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.3, 0.99]])
    lo, hi = linf_box(x, 0.1)
    assert torch.allclose(lo, torch.tensor([[0.0, 0.4, 0.9], [0.1, 0.2, 0.89]]))
    assert torch.allclose(hi, torch.tensor([[0.1, 0.6, 1.0], [0.3, 0.4, 1.0]]))
    lo, hi = linf_box(torch.full((2, 1, 2, 2), 0.5), torch.tensor([0.1, 0.2]))
    assert lo.shape == (2, 1, 2, 2)
    assert torch.allclose(hi[:, 0, 0, 0], torch.tensor([0.6, 0.7]))
    lo, hi = linf_box(x, 5.0, lo=-1.0, hi=2.0)
    assert bool((lo == -1).all()) and bool((hi == 2).all())
    with pytest.raises(UserError):
        linf_box(x, -0.1)


def test_robustness_spec_rows_are_margins():
    y = torch.tensor([0, 2, 1])
    C = robustness_spec(y, 3)
    assert C.shape == (3, 2, 3)
    assert C[1].tolist() == [[-1.0, 0.0, 1.0], [0.0, -1.0, 1.0]]
    logits = torch.randn(3, 3)
    margins = torch.einsum("bmo,bo->bm", C, logits)
    for b in range(3):
        others = [j for j in range(3) if j != int(y[b])]
        assert torch.allclose(margins[b], logits[b, y[b]] - logits[b, others])
    with pytest.raises(UserError):
        robustness_spec(torch.tensor([3]), 3)
    with pytest.raises(UserError):
        robustness_spec(torch.tensor([0]), 1)
