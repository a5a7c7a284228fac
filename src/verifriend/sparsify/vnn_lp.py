"""Layer-wise LP sparsification that keeps activation patterns on a validation set (VNN).

Baninajjar, Rezine, Aminifar, "Verification-Friendly Deep Neural Networks" (the VNN paper,
``../shared/papers/001_*``). Each hidden layer's weights are rewritten, first hidden layer
first, to minimize their L1 norm while every validation sample keeps its pre-activation
within a relative tolerance ``eps`` on the side of its sign:

* ``z >= 0``: ``(1 - eps) z <= z' <= (1 + eps) z`` (and ``z' >= 0``);
* ``z < 0``: ``(1 + eps) z <= z' <= (1 - eps) z`` (and ``z' <= 0``),

where ``z`` is the original network's pre-activation and ``z' = w'.a + b'`` is linear in the
new weights, with ``a`` the sample's input to the layer *as already rewritten* (layers before
``l`` new). ``eps = 0`` makes every row an equality. Rows of different neurons share no
variables, so each neuron is its own LP (``|w| = w+ + w-``, ``w = w+ - w-``), solved by HiGHS
in float64. The sign rows keep a margin (``margin``, or the value itself when it is smaller)
away from zero so that solver tolerances cannot flip a pattern; every layer is checked after
its rewrite and a neuron whose LP fails or whose pattern breaks keeps its original weights,
which the result reports.

Convolutions keep their weight sharing: one LP per output channel, whose variables are the
channel's kernel entries and bias and whose rows are every (sample, position) of the channel
(:class:`~verifriend.sparsify.layers.Conv`; equal rows once; beyond ``max_rows`` the LP
starts from that many drawn at random and adds the rows its optimum violates until none is,
so the result holds on every row). With ``eps = 0`` and more distinct rows than variables such
an equality system usually has one solution, the original kernel: when the rows have full
column rank no LP is run and the layer is kept (reported as ``determined``); convolutions get
sparser only with ``eps > 0``.

This module works on plain float64 arrays: ``layers`` is a list of
:class:`~verifriend.sparsify.layers.Dense` (or ``(W, b)`` pairs) and
:class:`~verifriend.sparsify.layers.Conv`, with ReLU between consecutive layers and none after
the last (the output layer, left as it is).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from verifriend.sparsify.layers import Dense, Layer, as_layer
from verifriend.sparsify.output_lp import output_lp

_TOL = 1e-9  # HiGHS's primal feasibility tolerance is set to this
_CHUNK = 10  # units solved one after another on one HiGHS model (the rows sent once)


@dataclass
class LayerReport:
    """What one hidden layer's rewrite did."""

    index: int
    nonzeros_before: int
    nonzeros_after: int
    lps: int
    seconds: float
    kept_original: list[int] = field(default_factory=list)  # neurons whose LP was not used
    max_rel_change: float = 0.0  # largest |z' - z| / |z| over samples (|z| > 1e-12)
    eps: float = 0.0  # the tolerance used (smaller than asked when a larger one broke)
    retries: list[str] = field(default_factory=list)  # why a larger eps was given up
    kind: str = "dense"  # "dense": an LP per neuron; "conv": per channel; "output": one LP
    rows: dict = field(default_factory=dict)  # LP rows used (conv: positions, distinct, rows)


def row_bounds(z: np.ndarray, eps: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``lo <= z' <= hi`` of the new pre-activations of one neuron, per sample.

    On the side of ``z``'s sign, within the relative tolerance ``eps``; the bound nearest to
    zero is pushed ``min(margin, |z|)`` away from it (``z = 0`` gives ``z' = 0``).
    """
    pos = z >= 0
    lo = np.where(pos, (1 - eps) * z, (1 + eps) * z)
    hi = np.where(pos, (1 + eps) * z, (1 - eps) * z)
    gap = np.minimum(margin, np.abs(z))
    lo = np.where(pos, np.maximum(lo, gap), lo)
    hi = np.where(pos, hi, np.minimum(hi, -gap))
    return lo, hi


def _row_data(a: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``[a, 1, -a, -1]`` (over ``[w+, b+, w-, b-]``) in HiGHS's row-wise sparse form."""
    ab = np.hstack([a, np.ones((len(a), 1))])
    rows = np.hstack([ab, -ab])
    nz = rows != 0
    starts = np.concatenate([[0], np.cumsum(nz.sum(1))[:-1]]).astype(np.int32)
    return int(nz.sum()), starts, np.nonzero(nz)[1].astype(np.int32), rows[nz]


def neuron_lps(a: np.ndarray, bounds: list[tuple[np.ndarray, np.ndarray]],
               start: np.ndarray | None = None) -> list[tuple[np.ndarray, float] | None]:
    """``min |w|_1 + |b|`` subject to ``lo <= a w + b <= hi`` for each ``(lo, hi)`` of
    ``bounds``: ``(w, b)``, or None where HiGHS finds no optimum. ``a`` is (samples, inputs).

    The units of one layer share ``a`` and the objective and differ only in the row bounds,
    so one HiGHS model is built and each next LP only changes the bounds. Each unit is then
    solved afresh: starting from the last unit's basis (a warm start) skips HiGHS's presolve
    and measured 15-40 % slower on 2x50's first layer (eps 0 and 0.1).

    ``start`` (row indices) begins with those rows only and adds the rows an optimum violates
    until it violates none (constraint generation, each round warm-started from the last
    basis): the result is an optimum of all the rows, while the LP holds the rows that matter
    (a convolution's many fields).
    """
    import highspy

    from verifriend.bounds.ops.milp_rows import quiet_highs

    n = a.shape[1]
    h = quiet_highs()
    h.setOptionValue("primal_feasibility_tolerance", _TOL)
    nv = 2 * (n + 1)  # [w+, b+, w-, b-]
    h.addVars(nv, np.zeros(nv), np.full(nv, highspy.kHighsInf))
    h.changeColsCost(nv, np.arange(nv, dtype=np.int32), np.ones(nv))
    active = np.arange(len(a)) if start is None else np.asarray(start)
    lo0, hi0 = bounds[0] if bounds else (np.zeros(len(a)), np.zeros(len(a)))
    h.addRows(len(active), lo0[active], hi0[active], *_row_data(a[active]))
    out = []
    for k, (lo, hi) in enumerate(bounds):
        if k:
            h.changeRowsBounds(len(active), np.arange(len(active), dtype=np.int32),
                               lo[active], hi[active])
            h.clearSolver()  # a fresh solve with presolve (see above)
        while True:
            h.run()
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                out.append(None)
                break
            x = np.asarray(h.getSolution().col_value)
            wb = x[: n + 1] - x[n + 1:]
            z = a @ wb[:n] + wb[n]
            bad = np.nonzero((z < lo - 10 * _TOL) | (z > hi + 10 * _TOL))[0]
            bad = np.setdiff1d(bad, active)
            if start is None or bad.size == 0:
                out.append((wb[:n], float(wb[n])))
                break
            h.addRows(len(bad), lo[bad], hi[bad], *_row_data(a[bad]))
            active = np.concatenate([active, bad])
    return out


def neuron_lp(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, float] | None:
    """One unit's LP of :func:`neuron_lps`."""
    return neuron_lps(a, [(lo, hi)])[0]


def _solve_chunk(args) -> list[tuple[np.ndarray, float] | None]:
    return neuron_lps(*args)


def forward(layers: list, x: np.ndarray) -> list[np.ndarray]:
    """Pre-activations of every layer for flat inputs ``x`` (samples, inputs), float64."""
    out, a = [], x
    for k, layer in enumerate(layers):
        z = as_layer(layer).apply(a)
        out.append(z)
        a = np.maximum(z, 0) if k < len(layers) - 1 else z
    return out


def _layer(a, z, layer: Layer, eps, margin, pool, max_rows) -> tuple[Layer, list[int], dict]:
    """The layer with every unit's LP solution; units whose LP has no optimum keep theirs."""
    rows, targets, start, info = layer.prepare(a, z, max_rows)
    first = rows if start is None else rows[start]
    if eps == 0 and _determined(first):  # one solution: the original weights, no LP to run
        return layer, list(range(layer.units)), {**info, "determined": True}
    bounds = [row_bounds(targets[:, j], eps, margin) for j in range(layer.units)]
    # fixed chunks, one model each: the same result for any number of workers
    jobs = [(rows, bounds[i:i + _CHUNK], start) for i in range(0, len(bounds), _CHUNK)]
    solved = pool.map(_solve_chunk, jobs) if pool else map(_solve_chunk, jobs)
    results = [r for part in solved for r in part]
    kept = [j for j, r in enumerate(results) if r is None]
    return layer.with_units(results), kept, info


def _determined(rows: np.ndarray) -> bool:
    """Whether equality rows ``rows w + b = z`` have at most one solution (full column rank):
    what a convolution's LP at ``eps = 0`` usually is, with more distinct fields than weights."""
    if rows.shape[0] <= rows.shape[1]:
        return False
    return bool(np.linalg.matrix_rank(np.hstack([rows, np.ones((len(rows), 1))])) ==
                rows.shape[1] + 1)


def _pattern_breaks(layer: Layer, z_new: np.ndarray, z: np.ndarray) -> list[int]:
    """The units with an output whose activation (``z > 0``) differs on some sample."""
    broken = ((z_new > 0) != (z > 0)).any(0)
    return sorted(int(u) for u in np.unique(layer.unit_index[broken]))


def _later_breaks(layers: list[Layer], k: int, a: np.ndarray, z_orig: list[np.ndarray]):
    """Samples whose later patterns or label change when layer ``k``'s output is ``a``."""
    bad = np.zeros(a.shape[0], bool)
    for j in range(k + 1, len(layers)):
        z = layers[j].apply(a)
        if j < len(layers) - 1:
            bad |= ((z > 0) != (z_orig[j] > 0)).any(1)
            a = np.maximum(z, 0)
        else:
            bad |= z.argmax(1) != z_orig[j].argmax(1)
    return np.nonzero(bad)[0]


def _rewrite(k, a, layers, z_orig, eps, margin, pool, max_rows) -> tuple[Layer, LayerReport]:
    """Layer ``k`` rewritten with ``eps``, halved (then 0) while later patterns or labels of
    some validation sample change; units that cannot be kept get their original weights."""
    layer = layers[k]
    start, tried = time.perf_counter(), []
    for e in (eps, eps / 2, eps / 4, 0.0) if eps > 0 else (0.0,):
        new, kept, info = _layer(a, z_orig[k], layer, e, margin, pool, max_rows)
        broken = _pattern_breaks(layer, new.apply(a), z_orig[k])
        new = new.restore(layer, broken)  # back to the original, never silently
        kept = sorted(set(kept) | set(broken))
        z_new = new.apply(a)
        samples = _later_breaks(layers, k, np.maximum(z_new, 0), z_orig)
        if samples.size == 0:
            break
        tried.append(f"eps {e:g}: samples {samples.tolist()} changed a later pattern or label")
    else:  # even the exact rows broke something: keep the layer as it was
        new, kept = layer, list(range(layer.units))
        z_new, e = layer.apply(a), 0.0
    big = np.abs(z_orig[k]) > 1e-12
    rel = np.abs(z_new - z_orig[k])[big] / np.abs(z_orig[k])[big]
    rep = LayerReport(k, int(np.count_nonzero(layer.weights)), int(np.count_nonzero(new.weights)),
                      0 if info.get("determined") else layer.units, time.perf_counter() - start,
                      kept,
                      float(rel.max()) if rel.size else 0.0, e, tried,
                      "dense" if isinstance(layer, Dense) else "conv", info)
    return new, rep


def sparsify(
    layers: list,
    x_val: np.ndarray,
    *,
    eps: float = 0.0,
    margin: float = 1e-6,
    workers: int = 1,
    max_rows: int = 4000,
    output: bool = False,
    on_layer: Callable[[LayerReport], None] | None = None,
) -> tuple[list[Layer], list[LayerReport]]:
    """The VNN rewrite of every hidden layer (the output layer is left as it is, or with
    ``output`` rewritten by :func:`~verifriend.sparsify.output_lp.output_lp`).

    ``x_val`` (samples, inputs) are the validation inputs in the network's input space,
    flattened; a convolution's LP starts from at most ``max_rows`` of its distinct rows and
    adds violated ones until none is.
    Returns the new layers and one :class:`LayerReport` per hidden layer. A neuron whose
    validation pattern changes (a solver tolerance) gets its original weights back and is
    listed in ``kept_original``; a layer whose rewrite changes a later pattern or a label
    is redone with a smaller ``eps`` (halved twice, then 0), the reasons in ``retries``.
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    layers = [as_layer(layer) for layer in layers]
    a = np.asarray(x_val, np.float64).reshape(len(x_val), -1)
    z_orig = forward(layers, a)
    new, reports = list(layers), []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for k in range(len(layers) - 1):
            new[k], rep = _rewrite(k, a, layers, z_orig, eps, margin, pool, max_rows)
            reports.append(rep)
            if on_layer:
                on_layer(rep)
            a = np.maximum(new[k].apply(a), 0)
    finally:
        if pool:
            pool.shutdown()
    if output and isinstance(layers[-1], Dense):
        new[-1], rep = _rewrite_output(a, layers[-1], z_orig[-1], eps, len(layers) - 1)
        reports.append(rep)
        if on_layer:
            on_layer(rep)
    return new, reports


def _rewrite_output(a, layer: Dense, z, eps, index) -> tuple[Dense, LayerReport]:
    """The output layer by label-margin LP, kept as it was unless every validation label
    holds (reported)."""
    start = time.perf_counter()
    new = output_lp(a, layer, z, eps)
    kept: list[int] = []
    if new is None or not np.array_equal(new.apply(a).argmax(1), z.argmax(1)):
        new, kept = layer, list(range(layer.units))
    z_new = new.apply(a)
    big = np.abs(z) > 1e-12
    rel = np.abs(z_new - z)[big] / np.abs(z)[big]
    return new, LayerReport(index, int(np.count_nonzero(layer.W)), int(np.count_nonzero(new.W)),
                            1, time.perf_counter() - start, kept,
                            float(rel.max()) if rel.size else 0.0, eps, [], "output",
                            {"rows": int(len(a) * (layer.units - 1))})


def magnitude_prune(layers: list, nonzeros: list[int]) -> list[Layer]:
    """Baseline: keep the ``nonzeros[k]`` largest-magnitude weights of hidden layer ``k``
    (biases kept), the output layer as it is."""
    out = []
    for k, layer in enumerate(as_layer(layer) for layer in layers):
        if k < len(nonzeros):
            W = layer.weights
            flat = np.abs(W).ravel()
            keep = np.zeros(flat.size, bool)
            keep[np.argsort(-flat, kind="stable")[: nonzeros[k]]] = True
            layer = layer.with_weights(np.where(keep.reshape(W.shape), W, 0.0))
        out.append(layer)
    return out
