"""Difference ReLU ``da = relu(y + dy) - relu(y)``: the nonlinear operator of a difference
network (GROCKET: Wang, Wang, Fu, Jiao, Huang, Li, Zhu, "A Tool for Neural Network Global
Robustness Certification and Training", Sec. III-B2), with lines that also use the
interval of ``y``.

**Setting.** A twin pair of inputs x, x' of the domain X has pre-activations ``y`` (of x)
and ``y' = y + dy`` (of x'); both lie in ``[L, U]``, the pre-activation interval over X
(``L = -inf, U = +inf``: nothing known, the paper's input-free case). With ``dy`` in
``[l, u]`` the feasible ``dy`` are ``t`` in ``[lo, hi] = [max(l, L - U), min(u, U - L)]``,
and for each ``t`` the difference takes exactly the values between::

    m(t) = max(0, t + L-)  for t >= 0,    max(t, -U+)     for t <= 0
    M(t) = min(t, U+)      for t >= 0,    min(0, t - L-)  for t <= 0

with ``L- = min(L, 0)`` and ``U+ = max(U, 0)``. Derivation: for ``t >= 0``,
``relu(y + t) - relu(y)`` is nondecreasing in ``y``, which ranges over ``[L, U - t]``; for
``t <= 0`` it is nonincreasing, over ``[L - t, U]``; and ``m(t) = -M(-t)`` (swap x, x').

**Lines.** ``M`` is piecewise linear with slopes in {0, 1} and kinks at ``L-, 0, U+``
(``m`` at ``-U+, 0, -L-``), so a line lies above ``M`` on ``[lo, hi]`` iff it does at the
five points ``{lo, hi}`` and the kinks clipped into ``[lo, hi]``. For a slope ``s`` the
tightest sound lines are therefore::

    upper:  da <= s dy + c(s),   c(s) = max_k  M(p_k) - s p_k
    lower:  da >= s dy + d(s),   d(s) = min_k  m(q_k) - s q_k

Every ``s`` is sound; alpha-CROWN optimizes ``s`` in ``[0, 1]`` per neuron and row (the
slopes of ``m`` and ``M`` lie there, so no better line has a slope outside). Without an
optimized slope the one of least area over ``[lo, hi]`` is taken: among the chords of the
five points, the line lowest (highest, for ``m``) at the midpoint, i.e. tangent to the
envelope there. Offsets get a relative slack of a few ulps, so rounding cannot cut a point.

Special cases: with L, U infinite this is the paper's Eq. 7 with its two lines swapped
back (as printed, its "lower" line is above 0 at ``dy = 0``, which is unsound): with
``l' = min(l, 0)``, ``u' = max(u, 0)`` the lower line is ``l'(u' - dy)/(u' - l')`` and the
upper ``u'(dy - l')/(u' - l')``. A stable active ``y`` (``L >= 0``) with ``hi <= U`` gives
``da = dy`` exactly; ``U <= 0`` (stable inactive over X) gives ``da = 0``; a sign split
``dy >= 0`` makes the lower line ``max(0, dy + L-)``'s chord and the upper ``min(dy, U+)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from verifriend.bounds.ops.base import BackwardResult, Interval, Node
from verifriend.errors import UnsupportedLayerError


def feasible_range(l: Tensor, u: Tensor, L: Tensor, U: Tensor) -> tuple[Tensor, Tensor]:
    """``[max(l, L - U), min(u, U - L)]``: the ``dy`` that some pair ``y, y + dy`` in
    ``[L, U]`` has."""
    return torch.maximum(l, L - U), torch.minimum(u, U - L)


def upper_envelope(t: Tensor, L: Tensor, U: Tensor) -> Tensor:
    """``M(t)``: the largest ``relu(y + t) - relu(y)`` over ``y, y + t`` in ``[L, U]``."""
    pos = torch.minimum(t, U.clamp(min=0))
    neg = torch.clamp(t - L.clamp(max=0), max=0)
    return torch.where(t >= 0, pos, neg)


def lower_envelope(t: Tensor, L: Tensor, U: Tensor) -> Tensor:
    """``m(t) = -M(-t)``: the smallest difference."""
    return -upper_envelope(-t, L, U)


def _points(lo: Tensor, hi: Tensor, kinks: tuple[Tensor, ...]) -> list[Tensor]:
    return [lo, hi, *(torch.minimum(torch.maximum(k, lo), hi) for k in kinks)]


def _offset(s: Tensor, pts: list[Tensor], vals: list[Tensor], slack: Tensor, upper: bool
            ) -> Tensor:
    """``max_k vals_k - s pts_k`` (upper) or the min (lower), widened by ``slack``."""
    out = None
    for p, v in zip(pts, vals):
        o = v - s * p
        out = o if out is None else (torch.maximum(out, o) if upper else torch.minimum(out, o))
    return out + slack if upper else out - slack


@dataclass
class _Shape:
    """The points and envelope values of a batch of neurons, for either line, and the
    slack that covers rounding in an offset: a few ulps of ``1 + max|value| + 2 max|point|``
    (an offset is at most ``max|value| + |s| max|point|`` with ``|s| <= 1``; a slope
    outside [0, 1] only reaches :func:`_offset` clamped)."""

    up_pts: list[Tensor]
    up_vals: list[Tensor]
    lo_pts: list[Tensor]
    lo_vals: list[Tensor]
    mid: Tensor
    slack: Tensor

    @classmethod
    def of(cls, l: Tensor, u: Tensor, L: Tensor, U: Tensor) -> _Shape:
        lo, hi = feasible_range(l, u, L, U)
        hi = torch.maximum(hi, lo)  # an empty range (a split past the ends) keeps its ends
        zero = torch.zeros_like(lo)
        Lm, Up = L.clamp(max=0).expand_as(lo), U.clamp(min=0).expand_as(lo)
        up_pts = _points(lo, hi, (Lm, zero, Up))
        lo_pts = _points(lo, hi, (-Up, zero, -Lm))
        up_vals = [upper_envelope(p, L, U) for p in up_pts]
        pmax = torch.maximum(lo.abs(), hi.abs())
        vmax = torch.stack([v.abs() for v in up_vals]).amax(0)  # |m| takes the same values
        slack = 8 * torch.finfo(lo.dtype).eps * (1 + vmax + 2 * pmax)
        return cls(up_pts, up_vals, lo_pts, [lower_envelope(p, L, U) for p in lo_pts],
                   (lo + hi) / 2, slack)

    def offsets(self, s_lo: Tensor, s_up: Tensor) -> tuple[Tensor, Tensor]:
        return (_offset(s_lo, self.lo_pts, self.lo_vals, self.slack, upper=False),
                _offset(s_up, self.up_pts, self.up_vals, self.slack, upper=True))

    def least_area_slopes(self) -> tuple[Tensor, Tensor]:
        """Per neuron, the lower and the upper slope of least area (see the module doc)."""
        return (self._tangent_at_mid(self.lo_pts, self.lo_vals, upper=False),
                self._tangent_at_mid(self.up_pts, self.up_vals, upper=True))

    def _tangent_at_mid(self, pts: list[Tensor], vals: list[Tensor], upper: bool) -> Tensor:
        """The slope of the hull of the points at the midpoint: among the chords that span
        it, the one highest there (lowest, for the lower hull). The least-area line over
        ``[lo, hi]`` of a concave (convex) envelope is its tangent at the midpoint."""
        mid, sign = self.mid, 1.0 if upper else -1.0
        best_s = torch.zeros_like(mid)
        best_v = torch.full_like(mid, -math.inf)
        for i in range(len(pts)):
            for j in range(len(pts)):
                dp = pts[j] - pts[i]
                spans = (pts[i] <= mid) & (mid <= pts[j]) & (dp > 0)
                s = ((vals[j] - vals[i]) / torch.where(spans, dp, 1.0)).clamp(0.0, 1.0)
                v = torch.where(spans, sign * (vals[i] + s * (mid - pts[i])), -math.inf)
                better = v > best_v
                best_s, best_v = torch.where(better, s, best_s), torch.maximum(v, best_v)
        return best_s


def diff_relu_lines(l: Tensor, u: Tensor, L: Tensor, U: Tensor, slope: Tensor | None = None
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sound lines ``s_lo dy + d <= da <= s_up dy + c`` for ``dy`` in ``[l, u]`` and ``y``
    in ``[L, U]``: ``(s_lo, d, s_up, c)``. ``slope`` (clamped to [0, 1]) sets both slopes;
    None takes the least-area ones. Shapes broadcast."""
    shape = _Shape.of(l, u, L, U)
    if slope is None:
        s_lo, s_up = shape.least_area_slopes()
    else:
        s_lo = s_up = slope.clamp(0.0, 1.0)
    d, c = shape.offsets(s_lo, s_up)
    return s_lo, d, s_up, c


@dataclass(eq=False, kw_only=True)
class DiffReLUNode(Node):
    """``da = relu(y + dy) - relu(y)`` of a difference network; its input is ``dy``.

    ``y_lower``/``y_upper`` (1, *shape) bound ``y`` (and ``y + dy``) over the input domain
    (``-inf``/``+inf`` when unknown). Branch and bound splits the sign of ``dy``.

    ``memo`` keeps the points of the last input bounds seen (the same tensor objects, with
    no gradient): alpha- and beta-CROWN call :meth:`backward` with fixed bounds at every
    step, and only the slopes change.
    """

    y_lower: Tensor = field(repr=False)
    y_upper: Tensor = field(repr=False)
    memo: tuple | None = field(default=None, init=False, repr=False)

    relaxed: ClassVar[bool] = True
    relax_all: ClassVar[bool] = True  # a stable sign still has lines that depend on [l, u]
    elementwise: ClassVar[bool] = True
    branchable: ClassVar[bool] = True
    has_milp: ClassVar[bool] = False

    def forward(self, dy: Tensor) -> Tensor:
        raise UnsupportedLayerError(
            f"layer '{self.name}' is a difference ReLU: its output depends on y as well as "
            "dy, so it has no forward value; evaluate the original network on both inputs.")

    def interval(self, x: Interval) -> Interval:
        lo, hi = feasible_range(x[0], x[1], self.y_lower, self.y_upper)
        return (lower_envelope(lo, self.y_lower, self.y_upper),
                upper_envelope(hi, self.y_lower, self.y_upper))

    def initial_slopes(self, lower: Tensor, upper: Tensor) -> Tensor:
        s_lo, s_up = _Shape.of(lower, upper, self.y_lower, self.y_upper).least_area_slopes()
        return (s_lo + s_up) / 2

    def _shape(self, l: Tensor, u: Tensor) -> _Shape:
        m = self.memo
        if m is not None and m[0] is l and m[1] is u:
            return m[2]
        shape = _Shape.of(l.unsqueeze(1), u.unsqueeze(1), self.y_lower.unsqueeze(1),
                          self.y_upper.unsqueeze(1))
        if not (l.requires_grad or u.requires_grad):
            self.memo = (l, u, shape)
        return shape

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        shape = self._shape(*ins[0])
        if alpha is None:
            s_lo, s_up = shape.least_area_slopes()
        else:
            s_lo = s_up = alpha.clamp(0.0, 1.0)
        d, c = shape.offsets(s_lo, s_up)
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        bias = (pos * d + neg * c).flatten(2).sum(-1)
        return (pos * s_lo + neg * s_up,), bias
