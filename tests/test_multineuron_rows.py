"""Multi-neuron rows (bounds/multineuron.py): soundness against sampling, gradient attacks and
an independent vertex enumeration by cdd; the rows must also cut the triangle relaxation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from verifriend.bounds import crown_intervals
from verifriend.bounds import multineuron as mn
from verifriend.bounds.frontends.torch import from_module
from verifriend.options import OptionError

F64 = torch.float64


def dense_net(seed: int, n_in: int = 3, width: int = 12) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 2)).to(F64)


def conv_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.ReLU(),
                         nn.Linear(8, 2)).to(F64)


def problem(net: nn.Module, shape, eps: float, seed: int):
    graph = from_module(net, shape)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, *shape, generator=gen, dtype=F64)
    lo, hi = x - eps, x + eps
    return graph, lo, hi, crown_intervals(graph, lo, hi)


def pre(graph, r: int) -> int:
    return graph.nodes[r].inputs[0]


def values_upto(graph, x: torch.Tensor, t: int) -> torch.Tensor:
    """Node t's value for the inputs x, flat (N, n) (graph.forward_all stopped at t)."""
    vals = [x]
    for node in graph.nodes[1: t + 1]:
        vals.append(node.forward(*(vals[i] for i in node.inputs)))
    return vals[t].flatten(1)


def row_values(rows: mn.NeuronRows, y: torch.Tensor) -> torch.Tensor:
    """cin . y[idx] + cout . relu(y)[idx] for flat pre-activations y (N, n) -> (N, R)."""
    v = y[:, rows.idx]  # (N, R, k)
    return (rows.cin * v + rows.cout * v.clamp(min=0)).sum(-1)


def cdd_piece_vertices(lo: np.ndarray, up: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """The oracle: vertices of {lo <= D y <= up} n orthant for every orthant, by cdd H -> V."""
    import cdd

    k = dirs.shape[1]
    base = np.concatenate([np.c_[up, -dirs], np.c_[-lo, dirs]])
    pts = []
    for signs in itertools.product((1.0, -1.0), repeat=k):
        H = np.concatenate([base, np.c_[np.zeros(k), np.diag(signs)]])
        gen = np.array(cdd.copy_generators(cdd.polyhedron_from_matrix(
            cdd.matrix_from_array(H, rep_type=cdd.RepType.INEQUALITY))).array)
        if gen.size:
            assert np.all(gen[:, 0] == 1.0)  # bounded pieces: no rays
            pts.append(gen[:, 1:])
    return np.concatenate(pts)


def groups_of(rows: mn.NeuronRows):
    """(group (k,), row indices) for each distinct group of the rows."""
    uniq, inverse = torch.unique(rows.idx, dim=0, return_inverse=True)
    return [(uniq[i], torch.nonzero(inverse == i).flatten()) for i in range(len(uniq))]


# ---------------------------------------------------------------- per group


@pytest.mark.parametrize(("seed", "k"), [(0, 3), (1, 3), (2, 2), (3, 3)])
def test_rows_hold_on_octahedron_and_cut_triangles(seed, k):
    graph, _, _, ivs = problem(dense_net(seed), (3,), 0.4, seed)
    rows = mn.build_rows(graph, ivs, mn.MncSettings(k=k))
    assert rows, "these networks have unstable neurons that interact"
    gen = torch.Generator().manual_seed(seed)
    dirs = mn.directions(k)
    checked = 0
    for r, nr in rows.items():
        assert nr.idx.dtype == torch.long and nr.cin.dtype == F64 and nr.offset.dtype == F64
        assert nr.idx.shape == nr.cin.shape == nr.cout.shape == (len(nr), k)
        lower, upper = (v.flatten() for v in ivs[pre(graph, r)])
        for group, sel in groups_of(nr):
            lo, up = mn.octahedral_bounds(graph, pre(graph, r), ivs, group[None], dirs)
            lo, up = lo[0], up[0]
            # the enumeration of piece vertices agrees with cdd's (both ways, up to rounding)
            oracle = cdd_piece_vertices(lo.numpy(), up.numpy(), dirs.numpy())
            mine = mn.hull_points(lo[None], up[None], dirs)[0]
            dist = np.abs(oracle[:, None] - mine[None]).max(2)
            assert dist.min(1).max() < 1e-9 and dist.min(0).max() < 1e-9
            # dense samples of the group's box that lie in the (unwidened) octahedron
            l, u = lower[group], upper[group]
            y = l + (u - l) * torch.rand(20_000, k, generator=gen, dtype=F64)
            d = y @ dirs.T
            y = y[((d >= lo) & (d <= up)).all(1)]
            y = torch.cat([y, torch.from_numpy(oracle)])
            assert len(y) > 100
            v = (nr.cin[sel] * y[:, None] + nr.cout[sel] * y[:, None].clamp(min=0)).sum(-1)
            assert bool((v <= nr.offset[sel]).all()), float((v - nr.offset[sel]).max())
            # some row cuts off a vertex of the product of triangles (l,0), (0,0), (u,u)
            tri = [((li, 0.0), (0.0, 0.0), (ui, ui)) for li, ui in zip(l.tolist(), u.tolist())]
            verts = torch.tensor([[p for p, _ in c] + [q for _, q in c]
                                  for c in itertools.product(*tri)], dtype=F64)
            a = torch.cat([nr.cin[sel], nr.cout[sel]], 1)
            assert float((verts @ a.T - nr.offset[sel]).max()) > 0
            # every row involves at least two neurons
            assert bool((((nr.cin[sel] != 0) | (nr.cout[sel] != 0)).sum(1) >= 2).all())
            checked += 1
    assert checked >= 3


# ---------------------------------------------------------------- whole network


def subset(rows: mn.NeuronRows, most: int) -> mn.NeuronRows:
    """Every j-th row, at most ``most`` of them."""
    sel = torch.arange(0, len(rows), max(1, -(-len(rows) // most)))
    return mn.NeuronRows(rows.node, rows.idx[sel], rows.cin[sel], rows.cout[sel],
                         rows.offset[sel])


def attack_rows(graph, rows: mn.NeuronRows, t: int, lo, hi, steps: int = 40) -> torch.Tensor:
    """Per row, the largest row value found over the input box by signed-gradient ascent
    from a random start (R,). On first-layer rows it comes within ~1e-7 of the offsets
    (relative to the interval widths), so a wrong offset does not go unnoticed."""
    R = len(rows)
    gen = torch.Generator().manual_seed(0)
    x = lo + (hi - lo) * torch.rand(R, *lo.shape[1:], generator=gen, dtype=F64)
    step = (hi - lo) / 20
    best = torch.full((R,), -torch.inf, dtype=F64)
    for _ in range(steps):
        x.requires_grad_(True)
        y = values_upto(graph, x, t)
        v = row_values(rows, y).diagonal()  # row i at sample i
        best = torch.maximum(best, v.detach())
        (g,) = torch.autograd.grad(v.sum(), x)
        x = torch.minimum(torch.maximum(x.detach() + step * g.sign(), lo), hi)
    return best


@pytest.mark.parametrize(("net", "shape", "eps", "seed"), [
    (dense_net(4), (3,), 0.4, 4),
    (dense_net(5, n_in=5, width=16), (5,), 0.3, 5),
    (conv_net(6), (1, 6, 6), 0.15, 6),
])
def test_rows_hold_for_network_inputs(net, shape, eps, seed):
    graph, lo, hi, ivs = problem(net, shape, eps, seed)
    rows = mn.build_rows(graph, ivs)
    assert rows
    gen = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, 2, (1000, *shape), generator=gen).to(F64)
    t = torch.cat([torch.rand(5000, *shape, generator=gen, dtype=F64), corners])
    xs = lo + (hi - lo) * t
    with torch.no_grad():
        values = graph.forward_all(xs)
    for r, nr in rows.items():
        v = row_values(nr, values[pre(graph, r)].flatten(1))
        assert bool((v <= nr.offset).all()), float((v - nr.offset).max())
        some = subset(nr, 100)
        worst = attack_rows(graph, some, pre(graph, r), lo, hi)
        assert bool((worst <= some.offset).all()), float((worst - some.offset).max())


@pytest.mark.parametrize("seed", range(4))
def test_octahedral_bounds_tighter_than_box_and_sound(seed):
    graph, lo, hi, ivs = problem(dense_net(10 + seed, n_in=4, width=14), (4,), 0.35, seed)
    gen = torch.Generator().manual_seed(seed)
    xs = lo + (hi - lo) * torch.rand(5000, 4, generator=gen, dtype=F64)
    with torch.no_grad():
        values = graph.forward_all(xs)
    dirs = mn.directions(3)
    tighter = 0
    for r in graph.relu_nodes():
        t = pre(graph, r)
        groups = mn.neuron_groups(*ivs[t])
        if len(groups) == 0:
            continue
        lo_d, up_d = mn.octahedral_bounds(graph, t, ivs, groups, dirs)
        box_lo, box_up = mn.interval_bounds(*ivs[t], groups, dirs)
        assert bool((lo_d >= box_lo).all() and (up_d <= box_up).all())
        tighter += int((lo_d > box_lo + 1e-6).sum() + (up_d < box_up - 1e-6).sum())
        d = torch.einsum("nGk,mk->nGm", values[t].flatten(1)[:, groups], dirs)
        assert bool((d >= lo_d - 1e-12).all() and (d <= up_d + 1e-12).all())
        # the chunked back-substitution gives the same bounds as one pass
        lo1, up1 = mn.octahedral_bounds(graph, t, ivs, groups, dirs, max_elements=100)
        assert torch.allclose(lo1, lo_d, rtol=0, atol=1e-12)
        assert torch.allclose(up1, up_d, rtol=0, atol=1e-12)
    assert tighter > 0


# ---------------------------------------------------------------- groups and edge cases


def test_groups_rank_by_area_and_respect_overlap():
    gen = torch.Generator().manual_seed(0)
    lower = -torch.rand(300, generator=gen, dtype=F64)
    upper = torch.rand(300, generator=gen, dtype=F64)
    upper[:40] = -0.1  # stable inactive
    lower[40:60] = 0.1  # stable active
    s = mn.MncSettings(neurons=120, chunk=50, groups=200, overlap=1)
    groups = mn.neuron_groups(lower, upper, s)
    area = -lower * upper
    assert groups.shape == (200, 3)
    assert bool((groups >= 60).all())  # unstable neurons only
    ranked = torch.argsort(area[60:], descending=True)[:120] + 60
    assert set(groups.flatten().tolist()) <= set(ranked.tolist())
    for a, b in itertools.combinations(groups.tolist(), 2):
        assert len(set(a) & set(b)) <= 1
    order = ranked.tolist()
    chunks = {tuple({order.index(i) // 50 for i in g}) for g in groups.tolist()}
    assert chunks == {(0,), (1,), (2,)}  # inside one chunk each; every chunk has groups
    assert torch.equal(groups, mn.neuron_groups(lower, upper, s))  # deterministic
    thin = mn.neuron_groups(lower, upper, mn.MncSettings(area=float(area[ranked[9]])))
    assert set(thin.flatten().tolist()) <= set(ranked[:10].tolist())
    disjoint = mn.neuron_groups(lower, upper, mn.MncSettings(overlap=0))
    assert len(set(disjoint.flatten().tolist())) == disjoint.numel()


def test_no_unstable_neurons_gives_no_rows():
    graph, _, _, ivs = problem(dense_net(7), (3,), 1e-6, 7)
    for r in graph.relu_nodes():
        lo, up = ivs[pre(graph, r)]
        assert not bool(((lo < 0) & (up > 0)).any())
    assert mn.build_rows(graph, ivs) == {}


def test_tiny_layer_and_bad_settings():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).to(F64)
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2, dtype=F64))
        net[0].bias.zero_()
    graph = from_module(net, (2,))
    ivs = crown_intervals(graph, -torch.ones(1, 2, dtype=F64), torch.ones(1, 2, dtype=F64))
    assert mn.build_rows(graph, ivs) == {}  # two unstable neurons, fewer than k = 3
    # k = 2 over an identity layer: the octahedron is the box, the hull the product of
    # triangles, so nothing cuts
    assert mn.build_rows(graph, ivs, mn.MncSettings(k=2)) == {}
    for bad in ({"k": 4}, {"k": 1}, {"rows": 0}, {"slack": -1.0}):
        with pytest.raises(OptionError):
            mn.MncSettings(**bad)


def test_neuron_rows_to_and_len():
    graph, _, _, ivs = problem(dense_net(0), (3,), 0.4, 0)
    nr = next(iter(mn.build_rows(graph, ivs).values()))
    f32 = nr.to(dtype=torch.float32)
    assert len(f32) == len(nr) > 0
    assert f32.cin.dtype == f32.offset.dtype == torch.float32 and f32.idx.dtype == torch.long


def test_deadline_stops_the_build():
    from verifriend.deadline import Deadline, DeadlineExpired

    graph, _, _, ivs = problem(dense_net(0), (3,), 0.4, 0)
    with pytest.raises(DeadlineExpired):
        mn.build_rows(graph, ivs, deadline=Deadline.after(-1.0))
    assert mn.build_rows(graph, ivs, deadline=Deadline.after(60.0))
