"""alpha-CROWN, beta-CROWN and float64 confirmation against sampling and HiGHS LP oracles."""

from __future__ import annotations

import itertools

import highspy
import numpy as np
import pytest
import torch
from test_bounds import sample_box
from torch import nn

from verifriend.bounds import Graph, crown, ibp, linf_box
from verifriend.bounds.alpha_crown import alpha_crown
from verifriend.bounds.beta_crown import beta_crown
from verifriend.bounds.confirm import confirm_bound, proof_holds
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.splits import Splits
from verifriend.errors import UserError


def fc_net(seed: int, widths=(6, 24, 24, 4)) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def conv_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    ).eval()


def problem(net: nn.Module, shape, D: int, m: int, eps: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    g = from_module(net, shape)
    x = torch.randn(D, *shape, generator=gen)
    lo, hi = linf_box(x, eps, -10.0, 10.0)
    C = torch.randn(D, m, g.num_outputs, generator=gen)
    return g, x, lo, hi, C


def spec_values(g: Graph, C: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """(D, N, m) values of ``C @ f`` at points (D, N, *shape)."""
    D, N = pts.shape[:2]
    out = g(pts.flatten(0, 1)).view(D, N, -1)
    return out @ C.transpose(1, 2)


def pre_activations(g: Graph, pts: torch.Tensor) -> dict[int, torch.Tensor]:
    values = g.forward_all(pts)
    return {r: values[g.nodes[r].inputs[0]] for r in g.relu_nodes()}


# ---------------------------------------------------------------- (a) alpha-CROWN


@pytest.mark.parametrize("intermediate", [False, True])
@pytest.mark.parametrize("make, shape, eps", [(fc_net, (6,), 0.4), (conv_net, (1, 8, 8), 0.15)])
def test_alpha_sound_and_tighter_than_crown(make, shape, eps, intermediate):
    g, _, lo, hi, C = problem(make(1), shape, 3, 4, eps, 2)
    ref = crown(g, lo, hi, C)
    b, state = alpha_crown(g, lo, hi, C, iterations=20, intermediate=intermediate)
    assert torch.all(b.lower >= ref.lower - 1e-6)
    assert torch.all(b.lower >= ibp(g, lo, hi, C).lower - 1e-6)
    assert torch.all(b.upper <= ref.upper + 1e-6)
    pts = sample_box(lo, hi, 10_000, torch.Generator().manual_seed(3))
    vals = spec_values(g, C, pts)
    assert torch.all(vals.amin(1) >= b.lower - 1e-5)
    assert torch.all(vals.amax(1) <= b.upper + 1e-5)
    # reported intermediate bounds: sound, and no looser than CROWN's
    z = pre_activations(g, pts.flatten(0, 1))
    for r, (zl, zu), (cl, cu) in zip(g.relu_nodes(), b.pre_relu, ref.pre_relu):
        zr = z[r].view(3, -1, *zl.shape[1:])
        assert torch.all(zr.amin(1) >= zl - 1e-5) and torch.all(zr.amax(1) <= zu + 1e-5)
        assert torch.all(zl >= cl - 1e-6) and torch.all(zu <= cu + 1e-6)
    # one slope per domain, spec row and neuron; all inside [0, 1]
    for r, a in state.alphas.items():
        assert a.shape == (3, 4, *g.nodes[r].shape)
        assert a.min() >= 0 and a.max() <= 1
    assert bool(state.inner) == intermediate
    for t, per_relu in state.inner.items():
        assert set(per_relu) == {r for r in g.relu_nodes() if r < t}
        for r, a in per_relu.items():  # one slope set per intermediate row (both sides)
            groups = state.rows[t].groups
            if groups is not None:  # rows by location; only the receptive field is stored
                L, R = groups.channel.shape
                assert a.shape[:4] == (3, L, 2 * R, g.nodes[r].shape[0]) and a.dim() == 6
            else:
                assert a.shape == (3, state.rows[t].pick.shape[1], *g.nodes[r].shape)
            assert a.min() >= 0 and a.max() <= 1
    # the float64 recomputation with the returned state gives the same bound; with
    # intermediate alphas the state is one iterate per domain while each row reports
    # its best iterate, so the state's bound may be looser (still sound)
    c = confirm_bound(g, lo, hi, C, state)
    if intermediate:
        assert torch.all(c.lower.float() <= b.lower + 1e-5)
        assert torch.all(vals.amin(1) >= c.lower.float() - 1e-5)
    else:
        torch.testing.assert_close(c.lower.float(), b.lower, atol=1e-5, rtol=1e-5)


def test_intermediate_alphas_tighten_further():
    g, _, lo, hi, C = problem(fc_net(2), (6,), 4, 3, 0.5, 3)
    final_only, _ = alpha_crown(g, lo, hi, C, iterations=20, intermediate=False)
    both, _ = alpha_crown(g, lo, hi, C, iterations=20, intermediate=True)
    assert (both.lower - final_only.lower).mean() > 1e-3
    (l0, u0), (l1, u1) = final_only.pre_relu[-1], both.pre_relu[-1]
    assert ((u1 - l1) < (u0 - l0) - 1e-4).any()  # optimized intermediate bounds are reported


def test_alpha_strictly_better_on_average_and_upper_optimized():
    g, _, lo, hi, C = problem(fc_net(4), (6,), 4, 3, 0.5, 5)
    ref = crown(g, lo, hi, C)
    b, _ = alpha_crown(g, lo, hi, C, iterations=30, bound_upper=True)
    assert (b.lower - ref.lower).mean() > 1e-3
    assert (ref.upper - b.upper).mean() > 1e-3
    vals = spec_values(g, C, sample_box(lo, hi, 10_000, torch.Generator().manual_seed(6)))
    assert torch.all(vals.amin(1) >= b.lower - 1e-5)
    assert torch.all(vals.amax(1) <= b.upper + 1e-5)


@pytest.mark.parametrize("intermediate", [False, True])
def test_alpha_sound_with_huge_steps(intermediate):
    """Projection keeps every iterate sound, even when Adam overshoots wildly."""
    g, _, lo, hi, C = problem(fc_net(7), (6,), 2, 3, 0.6, 8)
    vals = spec_values(g, C, sample_box(lo, hi, 5_000, torch.Generator().manual_seed(9)))
    for it in (1, 2, 7):
        b, state = alpha_crown(
            g, lo, hi, C, iterations=it, lr=50.0, patience=100, intermediate=intermediate
        )
        assert torch.all(vals.amin(1) >= b.lower - 1e-5)
        assert all(a.min() >= 0 and a.max() <= 1 for a in state.alphas.values())


# ---------------------------------------------------------------- (b) beta-CROWN soundness


def random_splits(g: Graph, pts: torch.Tensor, frac: float, gen: torch.Generator) -> Splits:
    """Split a random fraction of neurons on the pattern of one point per domain."""
    full = Splits.from_point(g, pts)
    return Splits(
        {
            r: torch.where(torch.rand(s.shape, generator=gen) < frac, s, torch.zeros_like(s))
            for r, s in full.signs.items()
        }
    )


def inside(g: Graph, splits: Splits, pts: torch.Tensor) -> torch.Tensor:
    """(D, N) whether each point (D, N, *shape) satisfies its domain's splits."""
    D, N = pts.shape[:2]
    ok = torch.ones(D, N, dtype=torch.bool)
    for r, z in pre_activations(g, pts.flatten(0, 1)).items():
        s = splits.signs[r].unsqueeze(1).expand(D, N, *z.shape[1:]).flatten(2)
        z = z.view(D, N, -1)
        ok &= ((s == 0) | ((s > 0) & (z >= 0)) | ((s < 0) & (z <= 0))).all(2)
    return ok


@pytest.mark.parametrize("intermediate", [False, True])
@pytest.mark.parametrize("make, shape, eps", [(fc_net, (6,), 0.5), (conv_net, (1, 8, 8), 0.2)])
def test_beta_sound_inside_split_region(make, shape, eps, intermediate):
    g, _, lo, hi, C = problem(make(11), shape, 4, 3, eps, 12)
    gen = torch.Generator().manual_seed(13)
    pts = sample_box(lo, hi, 10_000, gen)
    anchor = pts[torch.arange(4), torch.randint(0, 8_000, (4,), generator=gen)]
    splits = random_splits(g, anchor, 0.3, gen)
    b, state = beta_crown(g, lo, hi, C, splits, iterations=20, intermediate=intermediate)
    ok = inside(g, splits, pts)
    assert ok.sum(1).min() >= 1  # the anchor itself
    assert not torch.isinf(b.lower).any()  # feasible domains are never called empty
    vals = spec_values(g, C, pts)
    big = torch.finfo(vals.dtype).max
    low = torch.where(ok.unsqueeze(2), vals, big).amin(1)
    high = torch.where(ok.unsqueeze(2), vals, -big).amax(1)
    assert torch.all(low >= b.lower - 1e-5)
    assert torch.all(high <= b.upper + 1e-5)
    # the split region is smaller: beta-CROWN is at least as tight as alpha-CROWN there
    a, _ = alpha_crown(g, lo, hi, C, iterations=20, intermediate=intermediate)
    assert torch.all(b.lower >= a.lower - 1e-4)
    assert any(bool((bt > 0).any()) for bt in state.betas.values())


def test_infeasible_split_reported():
    g, _, lo, hi, C = problem(fc_net(14), (6,), 2, 2, 0.05, 15)
    ref = crown(g, lo, hi, C)
    r = g.relu_nodes()[0]
    z_lo, z_hi = ref.pre_relu[0]
    active = int((z_lo[0] > 0).nonzero()[0, 0])
    inactive = int((z_hi[1] < 0).nonzero()[0, 0])
    splits = Splits.empty(g, 2).with_split(
        torch.tensor([0, 1]), r, torch.tensor([active, inactive]), torch.tensor([-1, 1])
    )
    b, _ = beta_crown(g, lo, hi, C, splits, iterations=3)
    assert torch.isinf(b.lower).all() and (b.lower > 0).all()
    assert torch.isinf(b.upper).all() and (b.upper < 0).all()
    # consistent splits of the same neurons keep the domains (CROWN's bound, exactly)
    same = Splits.empty(g, 2).with_split(
        torch.tensor([0, 1]), r, torch.tensor([active, inactive]), torch.tensor([1, -1])
    )
    b2, _ = beta_crown(g, lo, hi, C, same, iterations=0)
    torch.testing.assert_close(b2.lower, ref.lower)


def test_splits_helpers_and_errors():
    g = from_module(fc_net(0), (6,))
    s = Splits.empty(g, 3)
    assert len(s) == 3 and s.count().tolist() == [0, 0, 0]
    r = g.relu_nodes()[1]
    kids, parent = s.branch(torch.tensor([0, 2]), r, torch.tensor([5, 7]))
    assert len(kids) == 4 and parent.tolist() == [0, 2, 0, 2]
    assert kids.signs[r][:, 5].tolist() == [-1, 0, 1, 0]
    assert kids.signs[r][:, 7].tolist() == [0, -1, 0, 1]
    assert kids.count().tolist() == [1, 1, 1, 1]
    with pytest.raises(UserError):
        s.with_split(torch.tensor([0]), 0, torch.tensor([0]), 1)
    with pytest.raises(UserError):
        s.with_split(torch.tensor([0]), r, torch.tensor([0]), 0)
    lo, hi = -torch.ones(2, 6), torch.ones(2, 6)
    with pytest.raises(UserError):
        beta_crown(g, lo, hi, None, s)  # 3 domains of splits for 2 boxes


# ---------------------------------------------------------------- (c) exactness vs HiGHS


def region_lp(
    g: Graph, lo: torch.Tensor, hi: torch.Tensor, c: torch.Tensor, splits: Splits, d: int
):
    """min c . f(x) over the box d intersected with the linear region of its splits (HiGHS)."""
    W = [n.weight.double().numpy() for n in g.nodes if hasattr(n, "weight")]
    b = [n.bias.double().numpy() for n in g.nodes if hasattr(n, "bias")]
    signs = [splits.signs[r][d].double().numpy() for r in g.relu_nodes()]
    n_in = W[0].shape[1]
    M, k = np.eye(n_in), np.zeros(n_in)  # current layer's value = M x + k
    rows, rhs = [], []
    for Wi, bi, s in zip(W, b, signs + [None]):
        M, k = Wi @ M, Wi @ k + bi
        if s is None:
            break
        # the pattern's constraints s * z >= 0, then the region's linear map of the ReLU
        rows.append(s[:, None] * M)
        rhs.append(-(s * k))
        active = (s > 0).astype(float)
        M, k = active[:, None] * M, active * k
    cost = c.double().numpy() @ M
    A, lb = np.concatenate(rows), np.concatenate(rhs)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVars(n_in, lo[d].double().numpy(), hi[d].double().numpy())
    h.changeColsCost(n_in, np.arange(n_in, dtype=np.int32), cost)
    nnz = A.size
    starts = np.arange(0, nnz, n_in, dtype=np.int32)
    index = np.tile(np.arange(n_in, dtype=np.int32), A.shape[0])
    h.addRows(A.shape[0], lb, np.full(A.shape[0], highspy.kHighsInf), nnz, starts, index, A.ravel())
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return h.getInfo().objective_function_value + float(c.double().numpy() @ k)


def test_beta_all_split_equals_region_lp():
    net = fc_net(21, widths=(4, 12, 12, 3)).double()
    g = from_module(net, (4,))
    gen = torch.Generator().manual_seed(22)
    D = 3
    x = torch.randn(D, 4, generator=gen, dtype=torch.float64)
    lo, hi = linf_box(x, 0.6, -10.0, 10.0)
    anchor = lo + (hi - lo) * torch.rand(D, 4, generator=gen, dtype=torch.float64)
    splits = Splits.from_point(g, anchor)
    C = torch.randn(D, 2, 3, generator=gen, dtype=torch.float64)
    b, _ = beta_crown(
        g,
        lo,
        hi,
        C,
        splits,
        iterations=1000,
        lr=0.05,
        lr_beta=1.0,
        lr_decay=0.993,
        patience=1000,
        tol=0.0,
    )
    exact = torch.tensor(
        [[region_lp(g, lo, hi, C[d, i], splits, d) for i in range(2)] for d in range(D)],
        dtype=torch.float64,
    )
    assert torch.all(b.lower <= exact + 1e-7)  # sound: never above the optimum
    torch.testing.assert_close(b.lower, exact, atol=1e-4, rtol=0)
    # without betas (alpha only) the same splits are not enough
    b0, _ = beta_crown(g, lo, hi, C, splits, iterations=0)
    assert (exact - b0.lower).max() > 1e-3


# ---------------------------------------------------------------- (d) float64 confirmation


def test_confirm_matches_and_proof_flag():
    g, _, lo, hi, C = problem(fc_net(31), (6,), 4, 3, 0.3, 32)
    gen = torch.Generator().manual_seed(33)
    anchor = sample_box(lo, hi, 10, gen)[:, 0]
    splits = random_splits(g, anchor, 0.2, gen)
    b, state = beta_crown(g, lo, hi, C, splits, iterations=15)
    b0, _ = beta_crown(g, lo, hi, C, splits, iterations=0)
    assert (b.lower - b0.lower).max() > 1e-3  # the state matters: confirming it is a real check
    c = confirm_bound(g, lo, hi, C, state, splits)
    assert c.lower.dtype == torch.float64
    torch.testing.assert_close(c.lower.float(), b.lower, atol=1e-5, rtol=1e-5)
    assert torch.equal(proof_holds(g, lo, hi, C, state, splits), c.lower > 0)
    # with intermediate alphas the state holds one iterate per domain: its bound is
    # at most the reported one, and at least CROWN's
    bi, si = beta_crown(g, lo, hi, C, splits, iterations=15, intermediate=True)
    ci = confirm_bound(g, lo, hi, C, si, splits).lower.float()
    assert torch.all(ci <= bi.lower + 1e-5) and torch.all(ci >= b0.lower - 1e-5)
    # alpha-CROWN's state (no splits) confirms too
    a, sa = alpha_crown(g, lo, hi, C, iterations=10, intermediate=False)
    ca = confirm_bound(g, lo, hi, C, sa)
    torch.testing.assert_close(ca.lower.float(), a.lower, atol=1e-5, rtol=1e-5)


def test_proof_holds_false_for_negative_bound():
    net = fc_net(34)
    with torch.no_grad():
        net[-1].bias[0] += 50.0  # output 0 dominates: e0 - e1 is provable, e1 - e0 is not
    g, _, lo, hi, _ = problem(net, (6,), 2, 1, 0.2, 35)
    C = torch.tensor([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]).expand(2, 2, 4)
    b, state = alpha_crown(g, lo, hi, C, iterations=5)
    assert (b.lower[:, 0] > 0).all() and (b.lower[:, 1] < 0).all()
    holds = proof_holds(g, lo, hi, C, state)
    assert holds[:, 0].all() and not holds[:, 1].any()


# ---------------------------------------------------------------- (e) warm start


def test_warm_start_reproduces_parent_and_helps_children():
    g, _, lo, hi, C = problem(fc_net(41, widths=(6, 32, 32, 4)), (6,), 3, 3, 0.5, 42)
    splits = Splits.empty(g, 3)
    parent_b, parent_state = beta_crown(g, lo, hi, C, splits, iterations=30)
    cold0, _ = beta_crown(g, lo, hi, C, splits, iterations=0)
    # the same domains warm-started with 0 iterations give the parent's optimized bound
    again, _ = beta_crown(g, lo, hi, C, splits, warm_start=parent_state, iterations=0)
    torch.testing.assert_close(again.lower, parent_b.lower)
    assert (again.lower - cold0.lower).mean() > 1e-3
    # children (one unstable neuron of the first ReLU split each way), via the parent map
    r = g.relu_nodes()[0]
    z_lo, z_hi = parent_b.pre_relu[0]
    neuron = ((z_lo < 0) & (z_hi > 0)).float().argmax(1)
    kids, parent = splits.branch(torch.arange(3), r, neuron)
    klo, khi = lo[parent], hi[parent]
    warm, _ = beta_crown(
        g, klo, khi, C[parent], kids, warm_start=parent_state, parent=parent, iterations=0
    )
    cold, _ = beta_crown(g, klo, khi, C[parent], kids, iterations=0)
    assert (warm.lower - cold.lower).mean() > 0
    # and a short warm run beats a short cold run
    warm5, _ = beta_crown(
        g, klo, khi, C[parent], kids, warm_start=parent_state, parent=parent, iterations=3
    )
    cold5, _ = beta_crown(g, klo, khi, C[parent], kids, iterations=3)
    assert (warm5.lower - cold5.lower).mean() > 0
    with pytest.raises(UserError):  # 3 parent rows for 6 children, no parent map
        beta_crown(g, klo, khi, C[parent], kids, warm_start=parent_state, iterations=0)


def test_patch_and_dense_intermediate_rows_agree():
    """Patch-mode rows with window-shaped slopes compute the same bounds as dense rows,
    and at CROWN's slopes the re-bounded intermediates reproduce CROWN's."""
    from verifriend.bounds import intermediate as inter
    from verifriend.bounds import optimizer as opt

    g, _, lo, hi, C = problem(conv_net(51), (1, 8, 8), 3, 2, 0.2, 52)
    p = opt.prepare_problem(g, lo, hi, C, None, False, 10**8)
    rows = inter.plan_rows(g, p.intervals)
    assert any(rw.groups is not None for rw in rows.values())
    gen = torch.Generator().manual_seed(53)
    dense_rows = {}
    for t, rw in rows.items():
        if rw.groups is None:
            dense_rows[t] = rw
            continue
        # the same neurons as dense rows: every domain takes all of them
        k = rw.neuron.shape[1]
        pick = torch.arange(2 * k).expand(rw.neuron.shape[0], -1)
        dense = inter.IntermediateRows(rw.neuron, rw.keep, rw.neuron[0], pick)
        dense_rows[t] = dense
        # random slopes as dense maps; the patch slopes are their windows at each row
        slopes = inter.inner_init(g, p, t, dense)
        slopes = {r: torch.rand(a.shape, generator=gen) for r, a in slopes.items()}
        _, windows = inter.patch_geometry(g, t)
        L, R = rw.groups.channel.shape
        patch_slopes = {}
        for j, a in slopes.items():
            per_loc = []
            for l in range(L):
                sel = torch.cat(
                    [torch.arange(l * R, l * R + R), k + torch.arange(l * R, l * R + R)]
                )
                maps = a[:, sel].flatten(0, 1)  # (D * 2R, C, H, W)
                win = inter.window_rows(maps, windows[j], rw.groups.loc[l : l + 1])[:, 0]
                per_loc.append(win.view(a.shape[0], 2 * R, *win.shape[1:]))
            patch_slopes[j] = torch.stack(per_loc, 1)
        got_dense = inter.inner_rows_bound(g, t, dense, p.intervals, slopes)
        got_patch = inter.inner_rows_bound(g, t, rw, p.intervals, patch_slopes)
        torch.testing.assert_close(got_patch, got_dense, atol=1e-5, rtol=1e-5)
    for chosen in (dense_rows, rows):
        p.inner_rows = chosen
        _, _, inner, _ = opt._initial_state(g, p, None, False)
        ivs = inter.inner_intervals(g, p, inner)
        for (a, b), (c, d) in zip(ivs, p.intervals):
            torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(b, d, atol=1e-5, rtol=1e-5)


def test_compute_bounds_alpha_method():
    from verifriend.bounds import compute_bounds

    g, _, lo, hi, C = problem(fc_net(61), (6,), 2, 3, 0.4, 62)
    b = compute_bounds(g, lo, hi, C, method="alpha")
    ref, _ = alpha_crown(g, lo, hi, C)
    assert b.method == "alpha-crown"
    torch.testing.assert_close(b.lower, ref.lower)
    with pytest.raises(UserError):
        compute_bounds(g, lo, hi, C, method="beta")


def test_domains_are_independent_in_a_batch():
    """A domain's bound does not depend on which other domains share its batch."""
    g, _, lo, hi, C = problem(conv_net(71), (1, 8, 8), 3, 2, 0.2, 72)
    gen = torch.Generator().manual_seed(73)
    splits = random_splits(g, sample_box(lo, hi, 4, gen)[:, 0], 0.3, gen)
    opts = {"iterations": 8, "patience": 100, "intermediate": True}
    together, _ = beta_crown(g, lo, hi, C, splits, **opts)
    for d in range(3):
        one = torch.tensor([d])
        alone, _ = beta_crown(g, lo[one], hi[one], C[one], splits.select(one), **opts)
        torch.testing.assert_close(alone.lower, together.lower[one], atol=1e-5, rtol=1e-5)
