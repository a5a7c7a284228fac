"""ReLU ``y = max(z, 0)``: the triangle relaxation (CROWN, alpha-CROWN slopes) and the
big-M MILP encoding of Tjeng et al. (2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from verifriend.bounds.ops.base import (
    BackwardResult,
    Interval,
    MilpStep,
    Node,
    PatchStep,
    window_rows,
)
from verifriend.bounds.ops.diff_relu import DiffReLUNode
from verifriend.bounds.ops.milp_rows import INF


def relu_relaxation(
    lower: Tensor, upper: Tensor, alpha: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Linear bounds ``lo * z <= relu(z) <= up * z + icpt`` for ``z`` in ``[lower, upper]``.

    Returns ``(lo, up, icpt)``, broadcasting ``lower``/``upper`` with ``alpha``. Stable
    neurons are exact. An unstable neuron gets the upper line through ``(l, 0)`` and
    ``(u, u)`` and lower slope ``alpha`` (clamped to [0, 1]) when given, otherwise
    CROWN's adaptive choice (Zhang et al., 2018): 1 if ``u > -l`` else 0.
    """
    unstable = (lower < 0) & (upper > 0)
    active = (lower >= 0).to(lower.dtype)
    denom = torch.where(unstable, upper - lower, torch.ones_like(lower))
    up = torch.where(unstable, upper / denom, active)
    icpt = torch.where(unstable, -lower * up, torch.zeros_like(lower))
    if alpha is None:
        free = (upper > -lower).to(lower.dtype)
    else:
        free = alpha.clamp(0.0, 1.0)
    lo = torch.where(unstable, free, active)
    return lo, up, icpt


@dataclass(eq=False, kw_only=True)
class ReLUNode(Node):
    relaxed: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True
    branchable: ClassVar[bool] = True
    onnx_op: ClassVar[str] = "Relu"
    torch_module: ClassVar[type] = nn.ReLU

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)

    def interval(self, x: Interval) -> Interval:
        return F.relu(x[0]), F.relu(x[1])

    def difference(self, pre: Interval) -> DiffReLUNode:
        """The difference ReLU (GROCKET), with the input's bounds over the domain."""
        return DiffReLUNode(inputs=self.inputs, shape=self.shape, name=self.name,
                            y_lower=pre[0], y_upper=pre[1])

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        lower, upper = ins[0]
        lo, up, icpt = relu_relaxation(lower.unsqueeze(1), upper.unsqueeze(1), alpha)
        # lower bound: positive coefficients take the lower line, negative the upper;
        # written as A * lo + neg * (up - lo) to touch the large tensor A fewer times
        neg = A.clamp(max=0)
        bias = (neg.flatten(2) @ icpt.flatten(2).transpose(1, 2)).squeeze(-1)  # icpt: (B, 1, ...)
        return (A * lo + neg * (up - lo),), bias

    patchable: ClassVar[bool] = True
    zero_off_map: ClassVar[bool] = True  # its slope maps are zero-padded windows

    def backward_patches(self, P: Tensor, step: PatchStep) -> tuple[Tensor, Tensor | None]:
        """The triangle relaxation on patches; ``step.alpha`` (patch-shaped) overrides the
        lower slopes of unstable neurons."""
        lower, upper = step.interval
        lo, up, icpt = relu_relaxation(lower, upper)
        if step.alpha is None:
            # one unfold of the three slope maps, shared by a location's rows
            maps = window_rows(torch.cat([lo, up - lo, icpt], 1), step.window, step.loc)
            lo, diff, icpt = maps.unsqueeze(2).unflatten(3, (3, -1)).unbind(3)
        else:
            unstable = ((lower < 0) & (upper > 0)).to(lower.dtype)
            maps = window_rows(torch.cat([lo, up, icpt, unstable], 1), step.window, step.loc)
            lo, up, icpt, unstable = maps.unsqueeze(2).unflatten(3, (4, -1)).unbind(3)
            lo = torch.where(unstable > 0, step.alpha.clamp(0.0, 1.0), lo)
            diff = up - lo
        neg = P.clamp(max=0)
        bias = (neg.flatten(3) @ icpt.flatten(3).transpose(-1, -2)).squeeze(-1)
        return torch.addcmul(P * lo, neg, diff), bias

    def milp(self, step: MilpStep) -> None:
        """Stable or split neurons are exact (a split also bounds ``z``); an unstable one
        gets one binary ``a``: ``y >= 0, y >= z, y <= z - l (1 - a), y <= u a`` (with
        ``relax`` a continuous ``a``: exactly the triangle relaxation)."""
        z, (l, u) = step.src[0], step.in_bounds[0]
        s = np.zeros(z.size) if step.signs is None else step.signs
        l, u = np.where(s > 0, np.maximum(l, 0), l), np.where(s < 0, np.minimum(u, 0), u)
        rel = step.rel
        step.empty |= bool((l > u + rel * (2 + np.abs(l) + np.abs(u))).any())
        step.bound_fix.append((z[s > 0], 0.0, INF))  # split z >= 0
        step.bound_fix.append((z[s < 0], -INF, 0.0))  # split z <= 0
        _relu_rows(step, step.out, z, l, u, s)


def _relu_rows(step: MilpStep, y, z, l, u, s) -> None:
    rows, rel = step.rows, step.rel
    active = (s > 0) | ((s == 0) & (l >= 0))
    inactive = ~active & ((s < 0) | (u <= 0))
    unstable = ~active & ~inactive
    step.bound_fix.append((y, 0.0, INF))
    step.bound_fix.append((y[inactive], 0.0, 0.0))
    k = int(active.sum())
    if k:
        one = np.ones(k)
        rows.rows(np.zeros(k), np.zeros(k), (np.arange(k), y[active], one),
                  (np.arange(k), z[active], -one))  # y = z
    k = int(unstable.sum())
    if not k:
        return
    # the big-M constants must be sound: widen like the variable boxes
    lo, up = l[unstable], u[unstable]
    lo, up = lo - rel * (1 + np.abs(lo)), up + rel * (1 + np.abs(up))
    yu, zu = y[unstable], z[unstable]
    a = rows.cols(np.zeros(k), np.ones(k))
    if not step.relax:
        rows.binaries.append(a)
    one, r = np.ones(k), np.arange(k)
    rows.rows(np.zeros(k), np.full(k, INF), (r, yu, one), (r, zu, -one))  # y >= z
    rows.rows(np.full(k, -INF), -lo, (r, yu, one), (r, zu, -one), (r, a, -lo))  # y <= z - l(1-a)
    rows.rows(np.full(k, -INF), np.zeros(k), (r, yu, one), (r, a, -up))  # y <= u a
