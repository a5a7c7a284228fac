"""Falsification before (and during) verification: search the input box for an unsafe output.

:func:`falsify` runs projected sign-gradient descent on :func:`spec_loss`, the per-clause
"distance to violation", attacking every clause of the unsafe region at once as separate
batch rows (for a robustness spec: a targeted attack towards every other class). Starting
points are the caller's ``candidates`` (the verifier passes minimisers of its linear
bounds), then uniform random points of the box, half of them moved first by
output-diversified initialisation (ODI, Tashiro et al. 2020) so that restarts do not all
fall into the same basin.

A point found in the working precision is only a candidate: :func:`check_points` re-runs
it through a float64 copy of the network and tests :meth:`Spec.violated_mask`; only a
point that passes is returned, so a ``sat`` built on it is real. The float64 copy of each
graph is kept in ``_FLOAT64_COPIES`` (weakly keyed by the graph object; graphs are treated
as immutable), because re-casting a large network for every call costs more than a short
attack. Pass ``graph64=`` to manage the copy yourself.
"""

from __future__ import annotations

import math
import time
import weakref

import torch
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.errors import UserError
from verifriend.specs.spec import F64, Spec

# graph -> its float64 copy, see the module docstring
_FLOAT64_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def spec_loss(
    y: Tensor, A: Tensor, b: Tensor, clause: Tensor, n_clauses: int | None = None
) -> Tensor:
    """Per-sample, per-clause distance to violation, shape (N, n_clauses).

    ``y`` (N, n_out); ``A`` (m, n_out), ``b`` (m,) the stacked rows ``a . Y >= b`` and
    ``clause`` (m,) the clause of each row (as :meth:`Spec.to_spec_matrix` orders them).
    Entry (n, j) is ``max_k (b_jk - a_jk . y_n)``, which is <= 0 exactly when clause j holds
    at ``y_n``; a clause without rows gives -inf (it always holds). ``n_clauses`` defaults
    to ``clause.max() + 1`` (pass it when trailing clauses are empty).
    """
    if n_clauses is None:
        n_clauses = int(clause.max()) + 1 if clause.numel() else 0
    gap = b - y @ A.T  # (N, m); same product as Spec.violated_mask, so signs agree exactly
    out = torch.full((y.shape[0], n_clauses), -math.inf, dtype=gap.dtype, device=gap.device)
    return out.scatter_reduce(1, clause.expand_as(gap), gap, "amax", include_self=True)


def float64_copy(graph: Graph) -> Graph:
    """The float64 copy of ``graph`` used to confirm counterexamples (cached, see above)."""
    if graph.dtype in (None, F64):
        return graph
    g64 = _FLOAT64_COPIES.get(graph)
    if g64 is None:
        g64 = graph.to(dtype=F64)
        _FLOAT64_COPIES[graph] = g64
    return g64


def check_points(graph64: Graph, spec: Spec, xs: Tensor,
                 graph32: Graph | None = None) -> tuple[Tensor, Tensor] | None:
    """The first of the points ``xs`` (K, ...) that violates ``spec`` in float64, or None.

    The points are flattened to (K, n_in) and clamped into the box first (so a point a
    solver left a rounding error outside the box still counts as inside). With ``graph32``
    (the float32 network) a point must also violate the spec in float32, as the deployed
    network (onnxruntime) computes it: a point that is unsafe in float64 only by a rounding
    margin is not a counterexample a user can replay. Returns ``(x, y)``: the flat float64
    input (n_in,) and its float64 output (n_out,), on the CPU.
    """
    if xs.numel() == 0:
        return None
    device = graph64.device
    x = xs.detach().to(device=device, dtype=F64).reshape(xs.shape[0], -1)
    if x.shape[1] != spec.n_inputs:
        raise UserError(f"points have {x.shape[1]} inputs, the spec {spec.n_inputs}.")
    x = torch.minimum(torch.maximum(x, spec.lower.to(device)), spec.upper.to(device))
    with torch.no_grad():
        y = graph64(x.reshape(x.shape[0], *graph64.input_shape)).reshape(x.shape[0], -1)
    if graph32 is not None and graph32.dtype == torch.float64:
        graph32 = None  # a float64 working network: float64 is what a user replays
    for i in spec.violated_mask(y).nonzero().flatten().tolist():
        # re-run the point alone: a batched product may round differently from the
        # single-sample forward a user will replay, and a point on the boundary can flip
        xi = x[i : i + 1]
        with torch.no_grad():
            yi = graph64(xi.reshape(1, *graph64.input_shape)).reshape(-1)
            if not spec.is_violated(yi):
                continue
            if graph32 is not None:
                dev32 = graph32.device or torch.device("cpu")
                x32 = xi.to(device=dev32, dtype=torch.float32)
                y32 = graph32(x32.reshape(1, *graph32.input_shape)).reshape(-1)
                if not spec.is_violated(y32.to("cpu", F64)):
                    continue
        return xi[0].cpu(), yi.to("cpu", F64)
    return None


def falsify(
    graph: Graph,
    spec: Spec,
    input_shape: tuple[int, ...] | None = None,
    *,
    time_budget: float = 10.0,
    steps: int = 100,
    restarts: int = 64,
    seed: int = 0,
    candidates: Tensor | None = None,
    odi_steps: int = 2,
    leak_start: float = 0.01,
    batch_size: int = 512,
    graph64: Graph | None = None,
) -> tuple[Tensor, Tensor] | None:
    """Search the box of ``spec`` for an input whose output is unsafe; ``(x, y)`` or None.

    ``input_shape`` (default: the graph's) is the shape the flat box is reshaped to.
    The starts are each of the ``candidates`` (K, n_in), the box centre, then ``restarts``
    uniform random points (every other one moved by ``odi_steps`` ODI steps first). Each
    start is run twice, ``steps`` sign-gradient steps each: with the true gradient and with
    ``leak_start`` times the gradient let through inactive ReLUs (decaying to 0). Every run
    attacks every clause (one batch row per clause); rows go in batches of at most about
    ``batch_size``. The candidates and the centre are checked before any search. The
    search stops at the first confirmed counterexample, after all runs, or once
    ``time_budget`` seconds have passed (the clock is read between steps). The result is
    confirmed in float64 (see :func:`check_points`): flat float64 input and float64 output.
    """
    deadline = time.perf_counter() + time_budget
    if steps < 0 or restarts < 0 or batch_size < 1:
        raise UserError("falsify needs steps >= 0, restarts >= 0 and batch_size >= 1.")
    if not spec.clauses:
        return None  # nothing is unsafe
    shape = tuple(input_shape) if input_shape is not None else tuple(graph.input_shape)
    g64 = graph64 if graph64 is not None else float64_copy(graph)

    # the cheapest checks first: the caller's candidates and the centre of the box
    first = [(spec.lower + spec.upper).unsqueeze(0) / 2]
    if candidates is not None and candidates.numel():
        first.insert(0, candidates.detach().to("cpu", F64).reshape(-1, spec.n_inputs))
    first = torch.cat(first)
    found = check_points(g64, spec, first, graph)
    if found is not None or steps == 0:
        return found
    return _pgd_search(graph, g64, spec, shape, first, steps=steps, restarts=restarts,
                       seed=seed, odi_steps=odi_steps, leak_start=leak_start,
                       batch_size=batch_size, deadline=deadline)


def _pgd_search(graph, g64, spec, shape, first, *, steps, restarts, seed, odi_steps,
                leak_start, batch_size, deadline) -> tuple[Tensor, Tensor] | None:
    """The PGD runs of :func:`falsify` from the fixed starts ``first`` (K, n_in) and
    ``restarts`` random points, in batches of rows; the first float64-confirmed hit."""
    dtype = graph.dtype or torch.float32
    device = graph.device or torch.device("cpu")
    J = spec.n_clauses
    lo, hi = spec.input_box(shape, dtype=dtype, device=device)
    width = hi - lo
    C, d, clause = spec.to_spec_matrix()
    A, b, clause = -C.to(device, dtype), d.to(device, dtype), clause.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)

    # Each start runs twice, once with the true ReLU gradient and once with a small leak
    # through inactive ReLUs (see _forward); random starts alternate with and without ODI.
    fixed = first.to(device, dtype).reshape(-1, *shape)
    total = 2 * (fixed.shape[0] + restarts)  # runs per clause
    # runs per batch (even, so that both runs of a start share it); one run = J rows
    per_batch = max(2, batch_size // J // 2 * 2)
    for s0 in range(0, total, per_batch):
        n = min(per_batch, total - s0)
        start = torch.arange(s0 // 2, (s0 + n) // 2, device=device)
        x = lo + width * torch.rand((n // 2, *shape), generator=gen, device=device, dtype=dtype)
        is_fixed = start < fixed.shape[0]
        if bool(is_fixed.any()):
            x[is_fixed] = fixed[start[is_fixed]]
        odi = (~is_fixed) & ((start - fixed.shape[0]) % 2 == 1)
        x, odi = x.repeat_interleave(2, 0), odi.repeat_interleave(2, 0)
        leak = torch.tensor([0.0, leak_start], device=device, dtype=dtype).repeat(n // 2)
        # every run attacks every clause: rows ordered (run, clause)
        x, odi, leak = (t.repeat_interleave(J, 0) for t in (x, odi, leak))
        target = torch.arange(J, device=device).repeat(n)
        if odi_steps > 0 and bool(odi.any()):
            x[odi] = _odi(graph, x[odi], lo, hi, width, odi_steps, gen, deadline)
        found = _pgd(
            graph, g64, spec, x, target, leak, A, b, clause, lo, hi, width, steps, deadline
        )
        if found is not None or time.perf_counter() > deadline:
            return found
    return None


class _LeakyGrad(torch.autograd.Function):
    """ReLU forward; backward lets ``leak`` times the gradient through inactive neurons.

    On networks where most neurons of a layer are off over the box (as in VNN-COMP's
    mnistfc), the true gradient only sees the few active paths and PGD stalls far from
    the unsafe region; a small leak points towards neurons worth switching on.
    """

    @staticmethod
    def forward(ctx, z: Tensor, leak: Tensor) -> Tensor:
        ctx.save_for_backward(z, leak)
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, leak = ctx.saved_tensors
        return grad * torch.where(z > 0, torch.ones_like(leak), leak), None


def _forward(graph: Graph, x: Tensor, leak: Tensor) -> Tensor:
    """``graph(x)`` flattened to (N, n_out), with per-row ``leak`` (N,) in ReLU backward."""
    if not bool((leak > 0).any()):
        return graph(x).reshape(x.shape[0], -1)
    values = [x]
    for node in graph.nodes[1:]:
        ins = [values[i] for i in node.inputs]
        if node.branchable:  # a ReLU
            lk = leak.view(-1, *([1] * (ins[0].dim() - 1)))
            values.append(_LeakyGrad.apply(ins[0], lk))
        else:
            values.append(node.forward(*ins))
    return values[-1].reshape(x.shape[0], -1)


def _odi(graph, x, lo, hi, width, steps, gen, deadline) -> Tensor:
    """Output-diversified starts: a few sign steps up ``w . f(x)``, a random ``w`` per row."""
    w = None
    for _ in range(steps):
        if time.perf_counter() > deadline:
            break
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            y = graph(x).reshape(x.shape[0], -1)
            if w is None:
                w = 2 * torch.rand(y.shape, generator=gen, device=y.device, dtype=y.dtype) - 1
            (g,) = torch.autograd.grad((w * y).sum(), x)
        # a step as long as the box is wide: ODI's point is to reach far-apart regions
        x = torch.minimum(torch.maximum(x.detach() + width * g.sign(), lo), hi)
    return x.detach()


def _pgd(graph, g64, spec, x, target, leak, A, b, clause, lo, hi, width, steps, deadline):
    """Sign-gradient descent of each row's clause loss; the first float64-confirmed hit."""
    J = spec.n_clauses
    rows = torch.arange(x.shape[0], device=x.device)
    for t in range(steps + 1):
        if time.perf_counter() > deadline:
            return None
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            # the leak decays with the step size, so late steps follow the true gradient
            y = _forward(graph, x, leak * _decay(t, steps))
            loss = spec_loss(y, A, b, clause, J)[rows, target]
            hits = loss.detach() <= 0
            need_grad = t < steps
            if need_grad:
                (g,) = torch.autograd.grad(loss.sum(), x)
        if bool(hits.any()):
            # confirm in float64 only the points the working precision flags
            found = check_points(g64, spec, x.detach()[hits], graph)
            if found is not None:
                return found
        if not need_grad:
            break
        # cosine decay from a quarter of the box width: large early steps cross ReLU
        # regions, small late ones settle at the boundary of the unsafe region
        step = 0.25 * _decay(t, steps)
        x = torch.minimum(torch.maximum(x.detach() - step * width * g.sign(), lo), hi)
    return None


def _decay(t: int, steps: int) -> float:
    """Cosine decay from 1 at step 0 to 0 at step ``steps``."""
    return 0.5 * (1 + math.cos(math.pi * t / max(steps, 1)))
