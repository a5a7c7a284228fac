"""The difference ReLU's lines, checked by dense sampling of (y, dy)."""

from __future__ import annotations

import math

import pytest
import torch

from verifriend.bounds.ops.diff_relu import (
    DiffReLUNode,
    diff_relu_lines,
    feasible_range,
    lower_envelope,
    upper_envelope,
)

T = torch.float64
INF = math.inf


def _samples(l, u, L, U, n=401):
    """A dense grid of feasible (y, dy): y, y + dy in [L, U] (infinite ends cut at +-4)."""
    ylo, yhi = max(L, -4.0), min(U, 4.0)
    y = torch.linspace(ylo, yhi, n, dtype=T)
    dy = torch.linspace(l, u, n, dtype=T)
    Y, DY = torch.meshgrid(y, dy, indexing="ij")
    keep = (Y + DY >= L) & (Y + DY <= U)
    Y, DY = Y[keep], DY[keep]
    return Y, DY, torch.relu(Y + DY) - torch.relu(Y)


CASES = [
    # (l, u, L, U): dy interval, y interval
    (-1.0, 1.0, -INF, INF),  # input-free, symmetric
    (-0.3, 0.8, -INF, INF),
    (0.0, 0.7, -INF, INF),  # split dy >= 0
    (-0.5, 0.0, -INF, INF),  # split dy <= 0
    (-1.0, 1.0, 0.5, 3.0),  # y stable active
    (-1.0, 1.0, -3.0, -0.2),  # y stable inactive
    (-1.0, 1.0, -0.4, 0.3),  # y unstable, narrow: the kinks fall inside [l, u]
    (-2.0, 1.5, -1.0, 2.0),
    (-0.2, 0.2, -1.0, 2.0),
    (0.0, 2.0, -0.5, 1.0),  # split, y bounded
    (-1.5, 0.0, -0.5, 1.0),
    (-1.0, 1.0, 0.0, 0.0),  # y fixed at 0
    (-3.0, 3.0, -1.0, 1.0),  # dy wider than y allows: the range is cut to [L - U, U - L]
]


@pytest.mark.parametrize("l,u,L,U", CASES)
def test_lines_hold_on_dense_samples(l, u, L, U):
    _Y, DY, DA = _samples(l, u, L, U)
    t = lambda v: torch.tensor([v], dtype=T)
    slopes = [None, *torch.linspace(0, 1, 11, dtype=T).tolist(), -0.5, 1.7]
    for s in slopes:
        s_lo, d, s_up, c = diff_relu_lines(t(l), t(u), t(L), t(U), None if s is None else t(s))
        assert bool((DA >= s_lo * DY + d - 1e-12).all()), (s, "lower")
        assert bool((DA <= s_up * DY + c + 1e-12).all()), (s, "upper")


@pytest.mark.parametrize("l,u,L,U", CASES)
def test_envelopes_are_exact_and_lines_touch(l, u, L, U):
    """m and M are the exact extremes of the difference at each dy (attained on the grid
    where y is unbounded or wide), and the least-area lines touch them."""
    t = lambda v: torch.tensor([v], dtype=T)
    _Y, DY, DA = _samples(l, u, L, U, n=801)
    assert bool((DA <= upper_envelope(DY, t(L), t(U)) + 1e-12).all())
    assert bool((DA >= lower_envelope(DY, t(L), t(U)) - 1e-12).all())
    lo, hi = feasible_range(t(l), t(u), t(L), t(U))
    grid = torch.linspace(float(lo), float(hi), 201, dtype=T)
    # the extreme values are attained by explicit pairs: y = U - t (t >= 0) or L - t
    for tv in grid.tolist():
        if tv >= 0:
            y = min(U, 4.0 + tv) - tv if math.isinf(U) else U - tv
        else:
            y = max(L, -4.0 - tv) - tv if math.isinf(L) else L - tv
        val = max(y + tv, 0.0) - max(y, 0.0)
        assert val == pytest.approx(float(upper_envelope(t(tv), t(L), t(U))), abs=1e-12)
    s_lo, d, s_up, c = diff_relu_lines(t(l), t(u), t(L), t(U))
    kinks = torch.tensor([L, 0.0, U, -L, -U], dtype=T).nan_to_num(posinf=0.0, neginf=0.0)
    grid = torch.cat([grid, torch.minimum(torch.maximum(kinks, lo), hi)])
    gap_up = (s_up * grid + c - upper_envelope(grid, t(L), t(U))).min()
    gap_lo = (lower_envelope(grid, t(L), t(U)) - s_lo * grid - d).min()
    assert 0 <= float(gap_up) < 1e-9 and 0 <= float(gap_lo) < 1e-9


def test_input_free_lines_are_eq7_with_the_labels_swapped_back():
    l, u = torch.tensor([-0.6, -1.0, 0.2]), torch.tensor([0.9, 0.3, 1.0])
    inf = torch.full_like(l, INF)
    s_lo, d, s_up, c = diff_relu_lines(l.double(), u.double(), -inf.double(), inf.double())
    lp, up = l.clamp(max=0).double(), u.clamp(min=0).double()
    # lower l'(u' - dy)/(u' - l'), upper u'(dy - l')/(u' - l')
    assert torch.allclose(s_lo, -lp / (up - lp)) and torch.allclose(d, lp * up / (up - lp))
    assert torch.allclose(s_up, up / (up - lp)) and torch.allclose(c, -lp * up / (up - lp))
    # Eq. 7 as printed takes the upper line as the lower one: at dy = 0 it claims
    # da >= -u'l'/(u' - l') > 0, but relu(y) - relu(y) = 0 there
    printed_lower_at_0 = -up[0] * lp[0] / (up[0] - lp[0])
    assert printed_lower_at_0 > 0


def test_stable_active_y_is_exact_and_inactive_is_zero():
    t = lambda v: torch.tensor([v], dtype=T)
    s_lo, d, s_up, c = diff_relu_lines(t(-0.5), t(0.5), t(1.0), t(2.0))
    assert float(s_lo) == pytest.approx(1) and float(s_up) == pytest.approx(1)
    assert abs(float(d)) < 1e-12 and abs(float(c)) < 1e-12
    s_lo, d, s_up, c = diff_relu_lines(t(-0.5), t(0.5), t(-2.0), t(-0.1))
    for v in (s_lo, d, s_up, c):
        assert abs(float(v)) < 1e-12


def test_interval_rule_covers_samples():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        L, U = sorted((torch.rand(2, generator=gen, dtype=T) * 4 - 2).tolist())
        l, u = sorted((torch.rand(2, generator=gen, dtype=T) * 4 - 2).tolist())
        node = DiffReLUNode(inputs=(0,), shape=(1,), y_lower=torch.tensor([[L]], dtype=T),
                            y_upper=torch.tensor([[U]], dtype=T))
        lo, hi = node.interval((torch.tensor([[l]], dtype=T), torch.tensor([[u]], dtype=T)))
        _, _, DA = _samples(l, u, L, U, n=201)
        if DA.numel():
            assert float(DA.min()) >= float(lo) - 1e-12 and float(DA.max()) <= float(hi) + 1e-12
