"""Adam with exponential learning-rate decay, for the alpha/beta optimization.

The update is torch.optim.Adam's (default betas, no weight decay). torch.optim is not
used because constructing its first optimizer imports torch._dynamo, about 1.6 s: more
than the whole verification of most VNN-COMP instances, paid once per process.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class Adam:
    """``groups``: ``(parameters, learning rate)`` pairs; every ``step`` multiplies each
    rate by ``decay`` afterwards (as ``ExponentialLR`` stepped after the optimizer)."""

    def __init__(self, groups: list[tuple[list[Tensor], float]], decay: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.groups = [(list(ps), float(lr)) for ps, lr in groups]
        self.decay, self.betas, self.eps = decay, betas, eps
        self.counts: dict[int, int] = {}  # steps taken, per parameter
        self.moments: dict[int, tuple[Tensor, Tensor]] = {}

    def zero_grad(self) -> None:
        for ps, _ in self.groups:
            for p in ps:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for k, (ps, lr) in enumerate(self.groups):
            # a parameter without a gradient stays put and keeps its step count
            live = [p for p in ps if p.grad is not None]
            # parameters with the same step count share one bias correction
            by_count: dict[int, list[Tensor]] = {}
            for p in live:
                self.counts[id(p)] = self.counts.get(id(p), 0) + 1
                by_count.setdefault(self.counts[id(p)], []).append(p)
            for t, group in by_count.items():
                c1, c2 = 1 - b1 ** t, math.sqrt(1 - b2 ** t)
                grads = [p.grad for p in group]
                ms, vs = zip(*(self._moments(p) for p in group))
                torch._foreach_lerp_(ms, grads, 1 - b1)
                torch._foreach_mul_(vs, b2)
                torch._foreach_addcmul_(vs, grads, grads, 1 - b2)
                denom = torch._foreach_sqrt(vs)
                torch._foreach_div_(denom, c2)
                torch._foreach_add_(denom, self.eps)
                torch._foreach_addcdiv_(group, ms, denom, -lr / c1)
            self.groups[k] = (ps, lr * self.decay)

    def _moments(self, p: Tensor) -> tuple[Tensor, Tensor]:
        if id(p) not in self.moments:
            self.moments[id(p)] = (torch.zeros_like(p), torch.zeros_like(p))
        return self.moments[id(p)]
