"""LeakyReLU: its relaxation against dense sampling, network bounds against the exact MILP
and a dense grid, and its ONNX / torch import against onnxruntime and torch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from verifriend.bounds import compute_bounds
from verifriend.bounds.frontends.onnx import import_model
from verifriend.bounds.frontends.torch import from_module
from verifriend.bounds.ops.leaky_relu import LeakyReLUNode
from verifriend.errors import UnsupportedLayerError
from verifriend.verify.milp import milp_bounds


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3, 1.0])
def test_relaxation_lines_enclose_dense_samples(slope):
    """For random boxes (stable, unstable, narrow) and random coefficients, the backward
    rule's linear lower bound stays below ``A . f(z)`` at every sampled ``z``."""
    g = torch.Generator().manual_seed(0)
    n, S, k = 40, 6, 2000
    mid = torch.randn(1, n, generator=g, dtype=torch.float64) * 2
    rad = torch.rand(1, n, generator=g, dtype=torch.float64) * 3
    rad[0, :5] = 1e-9  # near-point boxes
    lower, upper = mid - rad, mid + rad
    node = LeakyReLUNode(inputs=(0,), shape=(n,), slope=slope)
    A = torch.randn(1, S, n, generator=g, dtype=torch.float64)
    (coef,), bias = node.backward(A, [(lower, upper)], None)
    z = lower + (upper - lower) * torch.rand(k, n, generator=g, dtype=torch.float64)
    z = torch.cat([z, lower, upper, torch.zeros(1, n, dtype=torch.float64).clamp(lower, upper)])
    exact = node.forward(z) @ A[0].T  # (k, S)
    line = z @ coef[0].T + bias
    assert (exact >= line - 1e-9).all()
    lo, hi = node.interval((lower, upper))
    fz = node.forward(z)
    assert (fz >= lo - 1e-12).all() and (fz <= hi + 1e-12).all()


def _net(slope: float) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(slope), nn.Linear(8, 8),
                         nn.LeakyReLU(slope), nn.Linear(8, 3)).double().eval()


@pytest.mark.parametrize("slope", [0.05, 0.5])
def test_network_bounds_enclose_the_exact_milp_optimum(slope):
    """CROWN <= exact MILP minimum <= minimum over a dense grid of the 2-d input box, and
    the MILP is exact (the grid minimum is within its spacing times the Lipschitz bound)."""
    net = _net(slope)
    graph = from_module(net, (2,))
    lo = torch.tensor([[-1.0, -0.8]], dtype=torch.float64)
    hi = torch.tensor([[0.9, 1.0]], dtype=torch.float64)
    C = torch.eye(3, dtype=torch.float64)
    C = torch.cat([C, -C])  # lower and upper bounds of each output
    crown = compute_bounds(graph, lo, hi, C.unsqueeze(0), method="crown").lower[0]
    exact = milp_bounds(graph, lo, hi, C)[0]
    t = torch.linspace(0, 1, 301, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    x = lo + (hi - lo) * grid
    with torch.no_grad():
        sampled = (net(x) @ C.T).min(0).values
    lip = float(torch.stack([m.weight.detach().abs().sum(1).max() for m in net
                             if isinstance(m, nn.Linear)]).prod())
    step = float((hi - lo).max()) / 300  # grid spacing (L-inf)
    assert (crown <= exact + 1e-7).all()
    assert (exact <= sampled + 1e-7).all()
    assert (sampled - exact <= lip * step + 1e-7).all()
    assert bool((crown < exact - 1e-6).any())  # the relaxation is not exact here: a real test


def _onnx_model(slope: float) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 2))
    N = helper.make_node
    nodes = [N("MatMul", ["x", "w1"], ["h"]), N("LeakyRelu", ["h"], ["a"], alpha=slope),
             N("MatMul", ["a", "w2"], ["y"])]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 2))],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2.astype(np.float32), "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_onnx_leaky_relu_matches_onnxruntime_and_its_bounds_contain_samples():
    m = _onnx_model(0.2)
    graph = import_model(m, dtype=torch.float64)
    assert any(isinstance(n, LeakyReLUNode) and n.slope == pytest.approx(0.2) for n in graph.nodes)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    ref = np.concatenate([sess.run(None, {"x": r[None]})[0] for r in x])
    with torch.no_grad():
        out = graph(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    lo, hi = torch.full((1, 4), -0.5, dtype=torch.float64), torch.full((1, 4), 0.5,
                                                                        dtype=torch.float64)
    b = compute_bounds(graph, lo, hi, method="crown")
    xs = lo + (hi - lo) * torch.rand(5000, 4, dtype=torch.float64)
    with torch.no_grad():
        y = graph(xs)
    assert (y >= b.lower - 1e-9).all() and (y <= b.upper + 1e-9).all()


def test_torch_leaky_relu_converts_and_a_concave_slope_is_refused():
    net = _net(0.1)
    graph = from_module(net, (2,))
    x = torch.randn(20, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), net(x))
    with pytest.raises(UnsupportedLayerError, match="negative slope of 2.0"):
        from_module(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(2.0)), (2,))
    with pytest.raises(UnsupportedLayerError, match="LeakyRelu"):
        import_model(_onnx_model(-0.5))
