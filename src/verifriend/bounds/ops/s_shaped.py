"""S-shaped activations (sigmoid, tanh): node kinds and their bound rules (no MILP encoding).

Both functions are convex below 0 and concave above 0, so one relaxation serves
both (CROWN / DeepPoly style, Zhang et al. 2018):

* ``u <= 0`` (convex part): upper = chord, lower = tangent at the midpoint;
* ``l >= 0`` (concave part): lower = chord, upper = tangent at the midpoint;
* ``l < 0 < u``: the chord is an upper bound iff ``f'(u) >= slope``, otherwise the
  upper line is the tangent at some ``d`` in ``[0, u]`` that passes through
  ``(l, f(l))``; symmetrically for the lower line with ``d`` in ``[l, 0]``.

The tangent points of the mixed case are found by bisection that always keeps
the end of the bracket known to give a sound line, so the result is sound for
any number of steps. Lines are computed in float64 and cast back, which keeps
rounding from cutting into the function near touching points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from verifriend.bounds.ops.base import BackwardResult, Interval, Node

_BISECT_STEPS = 30
_TINY_WIDTH = 1e-6  # below this width a constant (monotone) bound is safer than a chord


class _SShaped(Node):
    relaxed: ClassVar[bool] = True
    relax_all: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True
    has_milp: ClassVar[bool] = False

    def interval(self, x: Interval) -> Interval:
        """Monotone increasing: the ends map to the ends."""
        return self.forward(x[0]), self.forward(x[1])

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        """Positive coefficients take the lower line, negative the upper (``alpha`` is
        ignored: the tangent points are not optimized)."""
        lower, upper = ins[0]
        la, lb, ua, ub = (t.unsqueeze(1) for t in s_shape_relaxation(self, lower, upper))
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        bias = (pos * lb + neg * ub).flatten(2).sum(-1)
        return (pos * la + neg * ua,), bias


@dataclass(eq=False, kw_only=True)
class SigmoidNode(_SShaped):
    onnx_op: ClassVar[str] = "Sigmoid"
    torch_module: ClassVar[type] = nn.Sigmoid

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


@dataclass(eq=False, kw_only=True)
class TanhNode(_SShaped):
    onnx_op: ClassVar[str] = "Tanh"
    torch_module: ClassVar[type] = nn.Tanh

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


def _sigmoid_grad(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _tanh_grad(x: Tensor) -> Tensor:
    return 1 - torch.tanh(x) ** 2


_FUNCS: dict[type, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    SigmoidNode: (torch.sigmoid, _sigmoid_grad),
    TanhNode: (torch.tanh, _tanh_grad),
}


def _tangent_through(f, df, point: Tensor, lo: Tensor, hi: Tensor, upper: bool) -> Tensor:
    """Tangent point ``d`` in ``[lo, hi]`` whose tangent passes (at least) through ``point``.

    For the upper line (``d >= 0``) a larger ``d`` is always sound once one is, so the
    bisection keeps ``hi``; for the lower line (``d <= 0``) it keeps ``lo``.
    """
    fp = f(point)
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        at_point = f(mid) + df(mid) * (point - mid)
        ok = at_point >= fp if upper else at_point <= fp
        if upper:
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        else:
            lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return hi if upper else lo


def s_shape_relaxation(
    node: Node, lower: Tensor, upper: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Lines ``a_l x + b_l <= f(x) <= a_u x + b_u`` on ``[lower, upper]``: (a_l, b_l, a_u, b_u)."""
    f, df = _FUNCS[type(node)]
    dtype = lower.dtype
    l, u = lower.double(), upper.double()
    fl, fu = f(l), f(u)
    narrow = (u - l) < _TINY_WIDTH
    width = torch.where(narrow, torch.ones_like(l), u - l)
    k = (fu - fl) / width
    chord_b = fl - k * l

    def tangent(d: Tensor) -> tuple[Tensor, Tensor]:
        s = df(d)
        return s, f(d) - s * d

    mid = (l + u) / 2
    ta, tb = tangent(mid)
    zero = torch.zeros_like(l)
    # mixed case: tangent lines through the far end point
    du = _tangent_through(f, df, l, zero, u.clamp(min=0), upper=True)
    dl = _tangent_through(f, df, u, l.clamp(max=0), zero, upper=False)
    ua_mix, ub_mix = tangent(du)
    la_mix, lb_mix = tangent(dl)
    mixed = (l < 0) & (u > 0)
    # chord tests only in the mixed case: elsewhere convexity decides, and a rounding
    # error in k must not flip a chord to the wrong side
    chord_up = (u <= 0) | (mixed & (df(u) >= k))
    chord_lo = (l >= 0) | (mixed & (df(l) >= k))
    up_a = torch.where(chord_up, k, torch.where(mixed, ua_mix, ta))
    up_b = torch.where(chord_up, chord_b, torch.where(mixed, ub_mix, tb))
    lo_a = torch.where(chord_lo, k, torch.where(mixed, la_mix, ta))
    lo_b = torch.where(chord_lo, chord_b, torch.where(mixed, lb_mix, tb))
    # a (near-)point interval: the constant bounds f(l) <= f(x) <= f(u) of a monotone f
    up_a, up_b = torch.where(narrow, zero, up_a), torch.where(narrow, fu, up_b)
    lo_a, lo_b = torch.where(narrow, zero, lo_a), torch.where(narrow, fl, lo_b)
    return lo_a.to(dtype), lo_b.to(dtype), up_a.to(dtype), up_b.to(dtype)
