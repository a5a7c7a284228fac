"""VNN LP sparsification: each row type, one neuron's LP against its original weights, and
whole tiny networks whose validation patterns must stay exactly as they were."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from verifriend.sparsify.vnn_lp import (
    forward,
    magnitude_prune,
    neuron_lp,
    neuron_lps,
    row_bounds,
    sparsify,
)


def test_rows_on_each_side_of_zero():
    z = np.array([2.0, -3.0, 0.0, 1e-9, -1e-9])
    lo, hi = row_bounds(z, 0.0, 1e-6)  # eps = 0: equalities
    np.testing.assert_array_equal(lo, z)
    np.testing.assert_array_equal(hi, z)
    lo, hi = row_bounds(z, 0.1, 1e-6)
    np.testing.assert_allclose(lo[:2], [1.8, -3.3])
    np.testing.assert_allclose(hi[:2], [2.2, -2.7])
    assert lo[2] == hi[2] == 0.0  # z = 0 stays 0
    assert lo[3] == pytest.approx(1e-9) and hi[4] == pytest.approx(-1e-9)  # small |z|: margin = |z|
    lo, hi = row_bounds(np.array([1e-8, -1e-8]), 0.5, 1e-6)
    assert lo[0] > 0 and hi[1] < 0  # the sign side never touches zero


def test_one_neuron_lp_is_feasible_sparser_and_no_more_nonzeros_than_rows():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((8, 30)), 0)  # 8 samples, 30 inputs
    w, b = rng.standard_normal(30), 0.3
    z = a @ w + b
    for eps in (0.0, 0.2):
        lo, hi = row_bounds(z, eps, 1e-6)
        w2, b2 = neuron_lp(a, lo, hi)
        z2 = a @ w2 + b2
        assert (z2 >= lo - 1e-7).all() and (z2 <= hi + 1e-7).all()
        assert np.abs(w2).sum() + abs(b2) <= np.abs(w).sum() + abs(b) + 1e-9
        assert np.count_nonzero(np.abs(np.append(w2, b2)) > 1e-12) <= len(z)  # a vertex


def test_an_infeasible_neuron_lp_returns_none():
    a = np.array([[1.0], [1.0]])
    assert neuron_lp(a, np.array([1.0, 2.0]), np.array([1.0, 2.0])) is None


def test_lps_on_one_model_reach_the_same_optima_as_fresh_ones():
    """One model, bounds changed between LPs (infeasible ones among them): every optimum
    equals the one a fresh model finds, and an infeasible LP is reported as None."""
    rng = np.random.default_rng(2)
    a = np.maximum(rng.standard_normal((12, 25)), 0)
    bounds = []
    for j in range(5):
        z = a @ rng.standard_normal(25) + 0.1 * j
        bounds.append(row_bounds(z, 0.1 * (j % 2), 1e-6))
    a2 = np.vstack([a, a[:1]])  # a repeated row with other bounds: infeasible
    bounds2 = [(np.append(lo, lo[0] + 1), np.append(hi, hi[0] + 1)) for lo, hi in bounds]
    bounds2[2] = (np.append(bounds[2][0], bounds[2][0][0]), np.append(bounds[2][1], bounds[2][1][0]))
    warm = neuron_lps(a2, bounds2)
    for j, (lo, hi) in enumerate(bounds2):
        fresh = neuron_lp(a2, lo, hi)
        if j != 2:
            assert warm[j] is None and fresh is None
            continue
        assert warm[j] is not None and fresh is not None
        l1 = [np.abs(s[0]).sum() + abs(s[1]) for s in (warm[j], fresh)]
        assert l1[0] == pytest.approx(l1[1], rel=1e-7)
    ok = neuron_lps(a, bounds)  # all feasible: each optimum as a fresh model's
    for (lo, hi), sol in zip(bounds, ok):
        fresh = neuron_lp(a, lo, hi)
        assert np.abs(sol[0]).sum() + abs(sol[1]) == pytest.approx(
            np.abs(fresh[0]).sum() + abs(fresh[1]), rel=1e-7)


def _tiny(seed: int, widths=(20, 12, 9, 3)):
    rng = np.random.default_rng(seed)
    layers = [(rng.standard_normal((o, i)) / np.sqrt(i), rng.standard_normal(o) * 0.1)
              for i, o in itertools.pairwise(widths)]
    x = rng.uniform(0, 1, (10, widths[0]))
    return layers, x


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_tiny_networks_keep_every_validation_pattern(seed, eps):
    layers, x = _tiny(seed)
    new, reports = sparsify(layers, x, eps=eps)
    z0, z1 = forward(layers, x), forward(new, x)
    for a, b in zip(z0[:-1], z1[:-1]):
        np.testing.assert_array_equal(a > 0, b > 0)
    np.testing.assert_array_equal(z0[-1].argmax(1), z1[-1].argmax(1))
    np.testing.assert_array_equal(new[-1][0], layers[-1][0])  # the output layer as it was
    assert len(reports) == len(layers) - 1
    first = reports[0]
    assert first.nonzeros_after < first.nonzeros_before  # 10 samples, 20 inputs: room to cut
    assert np.abs(new[0][0]).sum() <= np.abs(layers[0][0]).sum() + np.abs(layers[0][1]).sum()
    if eps == 0.0:
        assert first.max_rel_change < 1e-6
    else:
        assert first.max_rel_change <= eps + 1e-6


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_the_output_layer_option_keeps_labels_and_margins(eps):
    """--output-layer: the label-margin LP keeps every validation label with margins at least
    (1 - eps) of the original ones, and is no larger in L1 than the original layer."""
    layers, x = _tiny(3, widths=(20, 12, 6, 4))
    new, reports = sparsify(layers, x, eps=eps, output=True)
    assert [r.kind for r in reports] == ["dense", "dense", "output"]
    z0, z1 = forward(layers, x)[-1], forward(new, x)[-1]
    label = z0.argmax(1)
    np.testing.assert_array_equal(z1.argmax(1), label)
    rows = np.arange(len(x))
    for j in range(4):
        other = label != j
        m0 = z0[rows, label] - z0[:, j]
        m1 = z1[rows, label] - z1[:, j]
        assert (m1[other] >= (1 - eps) * m0[other] - 1e-6).all()
    (W, b), (W0, b0) = new[-1], layers[-1]
    assert np.abs(W).sum() + np.abs(b).sum() <= np.abs(W0).sum() + np.abs(b0).sum() + 1e-7
    assert reports[-1].nonzeros_after < reports[-1].nonzeros_before  # 10 samples x 3 rows


def test_workers_give_the_same_rewrite():
    layers, x = _tiny(7)
    a, _ = sparsify(layers, x)
    b, _ = sparsify(layers, x, workers=2)
    for (W1, b1), (W2, b2) in zip(a, b):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


def test_magnitude_baseline_keeps_the_largest_weights():
    layers, _ = _tiny(1)
    pruned = magnitude_prune(layers, [17, 5])
    assert [np.count_nonzero(W) for W, _ in pruned] == [17, 5, layers[2][0].size]
    W, W0 = pruned[0][0], layers[0][0]
    assert np.abs(W0[W != 0]).min() >= np.abs(W0[W == 0]).max()


def test_bad_eps_is_refused():
    layers, x = _tiny(0)
    with pytest.raises(ValueError, match="eps"):
        sparsify(layers, x, eps=1.5)
