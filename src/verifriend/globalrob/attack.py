"""A lower bound of global robustness: joint PGD over input pairs (x, x').

GROCKET's Table I reports as under-approximation the largest output change PGD finds
(Madry et al., ICLR 2018) "on the entire dataset". Here both inputs move: x in the domain
X and the perturbation ``d`` in the delta box, with ``x + d`` kept in X, by signed
gradient ascent on ``F_j(x + d) - F_j(x)`` from data points and from random points (a
random ``d`` each), with a cosine-decaying step. The reported value is recomputed in
float64 on the returned pair, which satisfies the constraints exactly, so it is an
output change the network really has: a sound lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from verifriend.bounds.graph import Graph
from verifriend.deadline import Deadline


@dataclass
class PairAttack:
    """The best pair found for one output: ``value = F_j(x_prime) - F_j(x)`` (float64)."""

    output: int
    value: float
    x: Tensor
    x_prime: Tensor


def pair_value(graph: Graph, output: int, x: Tensor, x_prime: Tensor) -> Tensor:
    """``F_output(x') - F_output(x)`` per pair of the batch, in float64."""
    g = graph.to(device="cpu", dtype=torch.float64)
    with torch.no_grad():
        a, b = g(x.double().cpu()), g(x_prime.double().cpu())
    return b.flatten(1)[:, output] - a.flatten(1)[:, output]


def _project(x: Tensor, d: Tensor, lo: float, hi: float, delta: float) -> tuple[Tensor, Tensor]:
    x = x.clamp(lo, hi)
    d = d.clamp(-delta, delta)
    return x, torch.maximum(torch.minimum(d, hi - x), lo - x)


def joint_pgd(graph: Graph, output: int, delta: float, domain: tuple[float, float] = (0.0, 1.0),
              starts: Tensor | None = None, random_starts: int = 256, steps: int = 50,
              generator: torch.Generator | None = None,
              deadline: Deadline | None = None) -> PairAttack:
    """The largest ``F_output(x') - F_output(x)`` that PGD finds (see the module doc).

    ``starts`` (N, *input shape) are data points (x starts there, d is random); the
    ``random_starts`` others start uniformly in X. Stops early at ``deadline``.
    """
    lo, hi = domain
    g = graph.to(dtype=torch.float32)
    shape = g.input_shape
    device = g.device
    xs = [torch.rand(random_starts, *shape, generator=generator).to(device) * (hi - lo) + lo]
    if starts is not None and starts.numel():
        xs.insert(0, starts.to(device=device, dtype=torch.float32).view(-1, *shape))
    x = torch.cat(xs)
    d = (torch.rand(x.shape, generator=generator).to(device) * 2 - 1) * delta
    x, d = _project(x, d, lo, hi, delta)
    best_v = torch.full((x.shape[0],), -math.inf, device=device)
    best_x, best_d = x.clone(), d.clone()
    for t in range(steps + 1):
        x.requires_grad_(True)
        d.requires_grad_(True)
        v = g(x + d).flatten(1)[:, output] - g(x).flatten(1)[:, output]
        with torch.no_grad():
            better = v > best_v
            best_v = torch.where(better, v, best_v)
            best_x[better], best_d[better] = x[better], d[better]
        if t == steps or (deadline is not None and deadline.expired()):
            break
        gx, gd = torch.autograd.grad(v.sum(), (x, d))
        scale = 0.5 * (1 + math.cos(math.pi * t / steps))
        with torch.no_grad():
            x = x + (0.05 * (hi - lo) * scale + 1e-4) * gx.sign()
            d = d + (0.25 * delta * scale + 1e-3 * delta) * gd.sign()
            x, d = _project(x, d, lo, hi, delta)
    i = int(best_v.argmax())
    # the pair in float64, with every constraint exact
    x0 = best_x[i:i + 1].double().cpu().clamp(lo, hi)
    x1 = (x0 + best_d[i:i + 1].double().cpu()).clamp(lo, hi)
    x1 = torch.minimum(torch.maximum(x1, x0 - delta), x0 + delta)
    value = float(pair_value(graph, output, x0, x1)[0])
    return PairAttack(output, value, x0[0], x1[0])
