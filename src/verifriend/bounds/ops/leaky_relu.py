"""Leaky ReLU ``y = max(z, a z)`` with a slope ``0 <= a <= 1`` below zero.

On ``[l, u]`` with ``l < 0 < u`` (unstable) the function is convex, so (as for ReLU in
CROWN, Zhang et al. 2018):

* upper line: the chord through ``(l, a l)`` and ``(u, u)``, slope ``k = (u - a l)/(u - l)``,
  intercept ``(a - k) l`` (``>= 0``);
* lower line: ``s z`` through the origin for any ``s`` in ``[a, 1]`` (for ``z >= 0``,
  ``z >= s z``; for ``z < 0``, ``a z >= s z``); CROWN's adaptive choice ``s = 1`` if
  ``u > -l`` else ``a``.

Stable neurons are exact (slope 1 or ``a``). The MILP (big-M, as Tjeng et al. 2019 for
ReLU) gives an unstable neuron one binary ``d``: ``y >= z``, ``y >= a z``,
``y <= z - (1 - a) l (1 - d)``, ``y <= a z + (1 - a) u d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from verifriend.bounds.ops.base import BackwardResult, Interval, MilpStep, Node
from verifriend.bounds.ops.milp_rows import INF


def _slope(value) -> float:
    a = float(value)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"a negative slope of {a} (only 0 to 1 keeps it convex)")
    return a


@dataclass(eq=False, kw_only=True)
class LeakyReLUNode(Node):
    slope: float = 0.01

    relaxed: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True
    onnx_op: ClassVar[str] = "LeakyRelu"
    torch_module: ClassVar[type] = nn.LeakyReLU

    @classmethod
    def params_from_onnx(cls, attrs: dict, consts: list) -> dict:
        return {"slope": _slope(attrs.get("alpha", 0.01))}

    @classmethod
    def params_from_torch(cls, module: nn.LeakyReLU) -> dict:
        return {"slope": _slope(module.negative_slope)}

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.slope)

    def interval(self, x: Interval) -> Interval:
        return self.forward(x[0]), self.forward(x[1])  # increasing

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        lower, upper = (t.unsqueeze(1) for t in ins[0])
        a = self.slope
        unstable = (lower < 0) & (upper > 0)
        stable = torch.where(lower >= 0, torch.ones_like(lower), torch.full_like(lower, a))
        width = torch.where(unstable, upper - lower, torch.ones_like(lower))
        k = torch.where(unstable, (upper - a * lower) / width, stable)
        icpt = torch.where(unstable, (a - k) * lower, torch.zeros_like(lower))
        s = torch.where(unstable, torch.where(upper > -lower, 1.0, a), stable)
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        bias = (neg * icpt).flatten(2).sum(-1)
        return (pos * s + neg * k,), bias

    def milp(self, step: MilpStep) -> None:
        rows, a, rel = step.rows, self.slope, step.rel
        y, z, (l, u) = step.out, step.src[0], step.in_bounds[0]
        n = z.size
        one, r = np.ones(n), np.arange(n)
        rows.rows(np.zeros(n), np.full(n, INF), (r, y, one), (r, z, -one))  # y >= z
        rows.rows(np.zeros(n), np.full(n, INF), (r, y, one), (r, z, -a * one))  # y >= a z
        active, inactive = l >= 0, u <= 0
        for mask, slope in ((active, 1.0), (inactive, a)):  # stable: y = slope z
            k = int(mask.sum())
            if k:
                rows.rows(np.zeros(k), np.zeros(k), (np.arange(k), y[mask], np.ones(k)),
                          (np.arange(k), z[mask], -slope * np.ones(k)))
        unstable = ~active & ~inactive
        k = int(unstable.sum())
        if not k:
            return
        lo, up = l[unstable], u[unstable]
        lo, up = lo - rel * (1 + np.abs(lo)), up + rel * (1 + np.abs(up))  # sound big-M
        yu, zu, r, one = y[unstable], z[unstable], np.arange(k), np.ones(k)
        d = rows.cols(np.zeros(k), np.ones(k))
        if not step.relax:
            rows.binaries.append(d)
        m_lo, m_up = (1 - a) * lo, (1 - a) * up
        # y - z - (1-a) l d <= -(1-a) l
        rows.rows(np.full(k, -INF), -m_lo, (r, yu, one), (r, zu, -one), (r, d, -m_lo))
        # y - a z - (1-a) u d <= 0
        rows.rows(np.full(k, -INF), np.zeros(k), (r, yu, one), (r, zu, -a * one), (r, d, -m_up))
