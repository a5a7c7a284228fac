"""Multi-neuron constraints: linear rows over the joint input/output space of ReLU groups.

For groups of ``k`` unstable neurons of one ReLU layer, the pre-activations are bounded in
every octahedral direction ``d in {-1, 0, 1}^k`` (by back-substitution to the input box),
the exact convex hull of the graph of ReLU over that octahedron is computed with cdd, and
the hull's facets that cut deepest into the single-neuron (triangle) relaxation are kept
as rows ``cin . y + cout . relu(y) <= offset``. The optimizer enforces them with Lagrange
multipliers (MN-BaB's gamma).

Multi-neuron constraints as used by MN-BaB (Ferrari, Mueller, Jovanovic, Vechev, "Complete
Verification via Multi-Neuron Relaxation Guided Branch-and-Bound", ICLR 2022, section 2.4
and eq. 3), constructed as in PRIMA (Mueller, Makarchuk, Singh, Pueschel, Vechev, "PRIMA:
General and Precise Neural Network Certification via Scalable Convex Hull Approximations",
POPL 2022): sparse neuron groups, octahedral input bounds, exact hull per group.

The vertices of the octahedron's orthant pieces are intersections of k of its planes and
the coordinate planes (integer normals, so every solve is well conditioned); cdd (floating
point) only turns the lifted vertices into facets. Groups are limited to k <= 3: in 8
dimensions (k = 4) cdd's floating-point V -> H took seconds to minutes per group and often
reported numerical inconsistency.

Soundness in floating point: cdd's facets only give directions. The octahedral bounds are
widened outward, and each kept row's offset is recomputed in float64 as the maximum of the
row over all vertices of the widened orthant pieces (lifted to (y, relu(y))) plus a
relative slack; cdd's own offsets are never used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifriend.bounds.crown import DEFAULT_MAX_ELEMENTS
from verifriend.bounds.graph import Graph
from verifriend.bounds.relax import backsubstitute
from verifriend.deadline import Deadline, check
from verifriend.options import check_fields

F64 = torch.float64
WIDEN_REL, WIDEN_ABS = 1e-9, 1e-12  # outward widening of every octahedral bound
FEASIBLE_TOL = 1e-10  # relative tolerance when keeping enumerated vertices (extra points are safe)
COEF_TOL = 1e-9  # coefficients of a unit-norm row below this are set to zero
MERGE_TOL = 1e-9  # relative distance below which hull points count as one for cdd


@dataclass(frozen=True)
class MncSettings:
    """How multi-neuron rows are built (PRIMA's sparse grouping). ``groups`` = 500: on a
    random 80-wide MLP the gamma-optimized root bound still improved from 150 to 500 groups
    per layer (-1.23 -> -1.12; alpha-CROWN: -1.36), and 500 groups per layer cost about a
    minute on ResNet6-A (6 ReLU layers) with two CPU threads, half of it back-substitution."""

    k: int = field(default=3, metadata={"help": "neurons per group", "min": 2, "max": 3})
    area: float = field(default=0.0, metadata={
        "help": "drop unstable neurons whose triangle area -l*u is below this", "min": 0})
    neurons: int = field(default=200, metadata={
        "help": "at most this many unstable neurons per ReLU layer (largest area first)",
        "min": 0})
    chunk: int = field(default=50, metadata={
        "help": "groups are formed inside chunks of this many neurons of the sorted list",
        "min": 2})
    overlap: int = field(default=1, metadata={
        "help": "two groups share at most this many neurons", "min": 0})
    groups: int = field(default=500, metadata={
        "help": "at most this many groups per ReLU layer", "min": 0})
    rows: int = field(default=12, metadata={
        "help": "keep at most this many hull rows per group (deepest cuts)", "min": 1})
    slack: float = field(default=1e-7, metadata={
        "help": "relative slack added to every row's offset", "min": 0})

    def __post_init__(self):
        check_fields(self)


@dataclass
class NeuronRows:
    """Rows  cin . y[idx] + cout . relu(y)[idx] <= offset  of ONE ReLU node (y = its input, flat)."""

    node: int  # index of the ReLU node in graph.nodes
    idx: Tensor  # (R, k) long, flat neuron indices into the ReLU's input
    cin: Tensor  # (R, k) coefficients on the pre-activations y
    cout: Tensor  # (R, k) coefficients on the outputs relu(y)
    offset: Tensor  # (R,)

    def to(self, dtype=None, device=None) -> NeuronRows:
        return NeuronRows(self.node, self.idx.to(device=device),
                          self.cin.to(device=device, dtype=dtype),
                          self.cout.to(device=device, dtype=dtype),
                          self.offset.to(device=device, dtype=dtype))

    def __len__(self) -> int:
        return int(self.offset.shape[0])


# ---------------------------------------------------------------- groups


def directions(k: int) -> Tensor:
    """The (3^k - 1) / 2 directions of {-1, 0, 1}^k whose first nonzero entry is +1, float64
    (M, k); the k unit directions come first, in order."""
    multi = [d for d in itertools.product((1, 0, -1), repeat=k)
             if sum(map(abs, d)) >= 2 and d[next(i for i, x in enumerate(d) if x)] == 1]
    multi.sort(key=lambda d: sum(map(abs, d)))
    return torch.cat([torch.eye(k, dtype=F64), torch.tensor(multi, dtype=F64).view(-1, k)])


def _by_first(n: int, k: int) -> Iterator[tuple[int, ...]]:
    """All k-subsets of range(n), the lowest elements taking turns: one subset starting with
    0, one starting with 1, ..., then the next ones (lexicographic within each)."""
    live = [(i, itertools.combinations(range(i + 1, n), k - 1)) for i in range(n - k + 1)]
    while live:
        for entry in list(live):
            rest = next(entry[1], None)
            if rest is None:
                live.remove(entry)
            else:
                yield (entry[0], *rest)


def _packing(n: int, k: int, overlap: int) -> Iterator[tuple[int, ...]]:
    """Greedy k-subsets of range(n), any two sharing at most ``overlap`` elements: a subset
    is taken when none of its (overlap+1)-subsets was used before. Candidates come in turns
    of their lowest element, so a capped prefix spreads over the whole chunk."""
    used: set[tuple[int, ...]] = set()
    for cand in _by_first(n, k):
        if overlap < k:
            keys = list(itertools.combinations(cand, overlap + 1))
            if any(key in used for key in keys):
                continue
            used.update(keys)
        yield cand


def neuron_groups(lower: Tensor, upper: Tensor, settings: MncSettings = MncSettings()) -> Tensor:
    """Groups (G, k) of flat neuron indices of one layer with bounds ``lower``/``upper``.

    Unstable neurons (l < 0 < u) are ranked by triangle area -l*u (largest first, those below
    ``settings.area`` dropped, the first ``settings.neurons`` kept), the list is cut into
    chunks (a tail shorter than k joins the previous chunk), and each chunk is packed greedily
    (:func:`_packing`); chunks take turns so that the ``settings.groups`` cap spreads evenly.
    """
    lo, up = lower.flatten().to(F64), upper.flatten().to(F64)
    area = torch.where((lo < 0) & (up > 0), -lo * up, torch.zeros_like(lo))
    keep = (area > 0) & (area >= settings.area)
    cand = torch.nonzero(keep).flatten()
    order = torch.sort(-area[cand], stable=True).indices
    ranked = cand[order][: settings.neurons].tolist()
    k = settings.k
    chunks = [ranked[i: i + settings.chunk] for i in range(0, len(ranked), settings.chunk)]
    if len(chunks) > 1 and len(chunks[-1]) < k:
        chunks[-2].extend(chunks.pop())
    live = [(c, _packing(len(c), k, settings.overlap)) for c in chunks if len(c) >= k]
    out: list[list[int]] = []
    while live and len(out) < settings.groups:
        for entry in list(live):
            c, gen = entry
            pos = next(gen, None)
            if pos is None:
                live.remove(entry)
            elif len(out) < settings.groups:
                out.append([c[p] for p in pos])
    return torch.tensor(out, dtype=torch.long).view(-1, k)


# ---------------------------------------------------------------- octahedral bounds


def interval_bounds(lower: Tensor, upper: Tensor, groups: Tensor, dirs: Tensor):
    """Bounds (G, M) of d . y[group] over the box [lower, upper] (flat)."""
    lo, up = lower.flatten().to(F64)[groups], upper.flatten().to(F64)[groups]  # (G, k)
    pos, neg = dirs.clamp(min=0), dirs.clamp(max=0)
    return lo @ pos.T + up @ neg.T, up @ pos.T + lo @ neg.T


def octahedral_bounds(graph: Graph, t: int, intervals, groups: Tensor, dirs: Tensor, *,
                      deadline: Deadline | None = None,
                      max_elements: int = DEFAULT_MAX_ELEMENTS) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds (G, M) of ``d . y[group]`` for node ``t``'s flat output ``y``:
    back-substitution to the input box for directions with two or more nonzeros, intersected
    with the interval bounds (the only bounds used for unit directions). Computed on the
    intervals' device."""
    dev = intervals[t][0].device
    groups, dirs = groups.to(dev), dirs.to(dev)
    lo, up = interval_bounds(*intervals[t], groups, dirs)
    multi = torch.nonzero((dirs != 0).sum(1) >= 2).flatten()
    G, M2 = groups.shape[0], len(multi)
    if G == 0 or M2 == 0:
        return lo, up
    shape = graph.nodes[t].shape
    n = math.prod(shape)
    width = max(math.prod(node.shape) for node in graph.nodes[: t + 1])
    per = max(1, max_elements // (width * 2 * M2))
    D = dirs[multi]  # (M2, k)
    for start in range(0, G, per):
        check(deadline)
        g = groups[start: start + per]
        cols = g[:, None, :].expand(-1, M2, -1).reshape(-1, g.shape[1])
        vals = D[None].expand(g.shape[0], -1, -1).reshape(-1, g.shape[1])
        A = torch.zeros(cols.shape[0], n, dtype=F64, device=dev).scatter_(1, cols, vals)
        A = torch.cat([A, -A]).view(1, -1, *shape)
        with torch.no_grad():
            res = backsubstitute(graph, t, A, intervals, deadline=deadline)[0]
        half = res.shape[0] // 2
        rows = slice(start, start + g.shape[0])
        lo[rows, multi] = torch.maximum(lo[rows][:, multi], res[:half].view(-1, M2))
        up[rows, multi] = torch.minimum(up[rows][:, multi], -res[half:].view(-1, M2))
    return lo, up


def widen(lo: Tensor, up: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds moved outward by a relative 1e-9 plus an absolute 1e-12."""
    return (lo - WIDEN_REL * lo.abs() - WIDEN_ABS, up + WIDEN_REL * up.abs() + WIDEN_ABS)


# ---------------------------------------------------------------- hull points


def _plane_systems(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every nonsingular choice of k planes among the octahedron's 2M planes and the k
    coordinate planes: (T, k) plane indices and (T, k, k) inverses of their normals."""
    k = dirs.shape[1]
    normals = np.concatenate([dirs, -dirs, np.eye(k)])
    combos = np.array(list(itertools.combinations(range(len(normals)), k)))
    mats = normals[combos]
    ok = np.abs(np.linalg.det(mats)) > 0.5  # integer matrices: det is 0 or >= 1 in size
    return combos[ok], np.linalg.inv(mats[ok])


def _enumerated_points(lo: np.ndarray, up: np.ndarray, dirs: np.ndarray) -> list[np.ndarray]:
    """Vertices of every orthant piece of each octahedron {lo <= D y <= up} (G, M): the
    intersections of k independent planes (octahedron faces and coordinate planes) that lie
    in the octahedron. Integer normals keep each solve well conditioned."""
    combos, inv = _plane_systems(dirs)
    out = []
    for s in range(0, lo.shape[0], 64):
        lo_s, up_s = lo[s: s + 64], up[s: s + 64]
        b = np.concatenate([up_s, -lo_s, np.zeros((lo_s.shape[0], dirs.shape[1]))], 1)
        v = np.einsum("tij,gtj->gti", inv, b[:, combos])  # (g, T, k)
        d = v @ dirs.T  # (g, T, M)
        tol = FEASIBLE_TOL * (1 + np.maximum(np.abs(lo_s), np.abs(up_s)).max(1))[:, None, None]
        inside = ((d <= up_s[:, None] + tol) & (d >= lo_s[:, None] - tol)).all(2)
        out.extend(v[g][inside[g]] for g in range(v.shape[0]))
    return out


def hull_points(lo: Tensor, up: Tensor, dirs: Tensor) -> list[np.ndarray | None]:
    """Per group, the vertices (P, k) of the pieces {lo <= D y <= up} n orthant (None: none)."""
    points = _enumerated_points(lo.cpu().numpy(), up.cpu().numpy(), dirs.cpu().numpy())
    return [p if len(p) else None for p in points]


# ---------------------------------------------------------------- facets and selection


def _distinct(points: np.ndarray) -> np.ndarray:
    """The points with near-duplicates (within MERGE_TOL relative, max-norm) left out: one per
    cell of a fine grid first, then any two still that close."""
    tol = MERGE_TOL * (1 + np.abs(points).max())
    first = np.unique(np.round(points / tol), axis=0, return_index=True)[1]
    pts = points[np.sort(first)]
    near = np.abs(pts[:, None] - pts[None]).max(2) <= tol
    return pts[near.argmax(1) == np.arange(len(pts))]


def _cdd_facets(lifted: np.ndarray, order) -> tuple[np.ndarray, list[int]] | None:
    """cdd's H-representation [b, A] (0 <= b + A x) of the points' hull and its equality
    rows, or None when cdd fails."""
    import cdd

    try:
        poly = cdd.polyhedron_from_matrix(cdd.matrix_from_array(
            np.c_[np.ones(len(lifted)), lifted], rep_type=cdd.RepType.GENERATOR), order)
        out = cdd.copy_inequalities(poly)
        H = np.array(out.array, dtype=np.float64).reshape(-1, lifted.shape[1] + 1)
        return H, sorted(out.lin_set)
    except Exception:  # noqa: BLE001 - cdd raises several kinds on degenerate input
        return None


def hull_facets(points: np.ndarray) -> np.ndarray | None:
    """Unit-norm facets (F, 2k+1) ``[a, b]`` with a . (y, relu(y)) <= b of the convex hull of
    the lifted points (cdd's V -> H in floating point, retried with other row orders when it
    reports a numerical inconsistency); equalities give two rows; None when cdd fails."""
    import cdd

    lifted = _distinct(np.c_[points, np.maximum(points, 0)])
    if lifted.shape[0] <= lifted.shape[1]:
        return None
    orders = (None, cdd.RowOrderType.MAX_INDEX, cdd.RowOrderType.RANDOM_ROW)
    found = next((f for f in (_cdd_facets(lifted, o) for o in orders) if f is not None), None)
    if found is None:
        return None
    H, lin = found
    rows = np.c_[-H[:, 1:], H[:, :1]]  # 0 <= b + A x  <=>  -A x <= b
    rows = np.concatenate([rows, -rows[lin]])
    norm = np.linalg.norm(rows[:, :-1], axis=1)
    keep = norm > 1e-12
    return rows[keep] / norm[keep, None] if keep.any() else None


def sound_offsets(a: np.ndarray, points: np.ndarray, slack: float) -> np.ndarray:
    """max over the lifted points of a . (y, relu(y)), plus slack * (1 + largest |term|)."""
    lifted = np.c_[points, np.maximum(points, 0)]
    vals = lifted @ a.T  # (P, F)
    terms = np.abs(lifted)[:, None, :] * np.abs(a)[None]  # (P, F, 2k)
    return vals.max(0) + slack * (1 + terms.max(axis=(0, 2)))


def triangle_violation(a: np.ndarray, b: np.ndarray, lo: np.ndarray, up: np.ndarray):
    """How far each row a . (y, r) <= b is exceeded at the worst vertex of the product of the
    triangles conv{(l,0), (0,0), (u,u)} of the group's neurons (positive: it cuts)."""
    k = lo.shape[0]
    cin, cout = a[:, :k], a[:, k:]
    best = np.maximum(np.maximum(cin * lo, 0.0), (cin + cout) * up)
    return best.sum(1) - b


def select_rows(facets: np.ndarray, points: np.ndarray, lo: np.ndarray, up: np.ndarray,
                settings: MncSettings) -> tuple[np.ndarray, np.ndarray]:
    """The (at most ``settings.rows``) facets over two or more neurons that cut deepest into
    the triangle product, with sound offsets: (R, 2k) coefficients and (R,) offsets."""
    k = lo.shape[0]
    a = np.where(np.abs(facets[:, :-1]) < COEF_TOL, 0.0, facets[:, :-1])
    involved = ((a[:, :k] != 0) | (a[:, k:] != 0)).sum(1)
    a = a[involved >= 2]
    if a.shape[0] == 0:
        return a, np.zeros(0)
    b = sound_offsets(a, points, settings.slack)
    score = triangle_violation(a, b, lo, up)
    least = 1e-6 * float(np.mean(up - lo))
    order = [i for i in np.argsort(-score, kind="stable") if score[i] > least][: settings.rows]
    return a[order], b[order]


# ---------------------------------------------------------------- all layers


def _cuts_box(lo: Tensor, up: Tensor, box_lo: Tensor, box_up: Tensor) -> Tensor:
    """Per group, whether some octahedral bound is tighter than the box's: otherwise the
    octahedron is the box, whose hull is the product of triangles, and no row can cut."""
    tol = 1e-9 * (1 + torch.maximum(box_lo.abs(), box_up.abs()))
    return ((lo > box_lo + tol) | (up < box_up - tol)).any(1)


def _layer_rows(graph: Graph, r: int, intervals, settings: MncSettings, deadline,
                max_elements: int) -> NeuronRows | None:
    """Rows of ReLU node ``r`` (None when it has none)."""
    t = graph.nodes[r].inputs[0]
    lower, upper = (v.flatten().cpu() for v in intervals[t])
    groups = neuron_groups(lower, upper, settings)
    dirs = directions(settings.k)
    if groups.shape[0] > 0:
        lo, up = (v.cpu() for v in octahedral_bounds(
            graph, t, intervals, groups, dirs, deadline=deadline, max_elements=max_elements))
        cuts = _cuts_box(lo, up, *interval_bounds(lower, upper, groups, dirs))
        groups, lo, up = groups[cuts], lo[cuts], up[cuts]
    if groups.shape[0] == 0:
        return None
    exact, wide = hull_points(lo, up, dirs), hull_points(*widen(lo, up), dirs)
    idx, coef, off = [], [], []
    for g, (pts_exact, pts) in enumerate(zip(exact, wide)):
        if g % 32 == 0:
            check(deadline)
        facets = None if pts_exact is None or pts is None else hull_facets(pts_exact)
        if facets is None:
            continue
        a, b = select_rows(facets, pts, lower[groups[g]].numpy(), upper[groups[g]].numpy(),
                           settings)
        idx.extend([groups[g]] * len(b))
        coef.append(a)
        off.append(b)
    if not idx:
        return None
    a = torch.from_numpy(np.concatenate(coef))
    k = settings.k
    return NeuronRows(r, torch.stack(idx), a[:, :k].contiguous(), a[:, k:].contiguous(),
                      torch.from_numpy(np.concatenate(off)))


def build_rows(graph: Graph, intervals, settings: MncSettings = MncSettings(), *,
               deadline: Deadline | None = None,
               max_elements: int = DEFAULT_MAX_ELEMENTS) -> dict[int, NeuronRows]:
    """Multi-neuron rows for every ReLU node with unstable neurons (nodes without rows are
    left out), as MN-BaB's multi-neuron constraints (Ferrari et al., ICLR 2022, eq. 3) built
    the PRIMA way (Mueller et al., POPL 2022).

    ``intervals`` holds (lower, upper) of batch 1 for every node (e.g. from
    :func:`verifriend.bounds.crown.crown_intervals`). Everything is computed in float64 (the
    back-substitution on the intervals' device, the hulls on the CPU) and the rows are
    returned in float64 on the intervals' device. ``deadline`` is checked between back-substitution
    chunks and between groups (raises ``DeadlineExpired``).
    """
    if graph.dtype not in (None, F64):
        graph = graph.to(dtype=F64)
    ivs = [None if iv is None else (iv[0].to(F64), iv[1].to(F64)) for iv in intervals]
    out: dict[int, NeuronRows] = {}
    for r in graph.relu_nodes():
        rows = _layer_rows(graph, r, ivs, settings, deadline, max_elements)
        if rows is not None:
            out[r] = rows.to(device=ivs[0][0].device)
    return out
