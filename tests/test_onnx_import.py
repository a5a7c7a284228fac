"""ONNX import: round trips through the zoo, the VNN-COMP models against onnxruntime,
hand-built graphs for the remaining ops, and sound bounds of sigmoid/tanh networks.

Forward comparisons run in float32. The tolerance is 1e-5 relative to the output's
scale, ``|ir - ref| <= 1e-5 * max(1, max |ref|)``: an absolute 1e-5 for outputs of
order one, and relative for large-valued outputs (float32 rounding grows with the
magnitude of the sums, and the importer folds constants in float64, which changes
the last bits compared with onnxruntime's step-by-step float32 evaluation).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from verifriend.app.artifacts import export_onnx
from verifriend.bounds import compute_bounds
from verifriend.bounds.frontends.onnx import import_model, load_onnx
from verifriend.bounds.ops.s_shaped import SigmoidNode, TanhNode, s_shape_relaxation
from verifriend.errors import UnsupportedLayerError, UserError
from verifriend.models import build_model, list_architectures

VNNCOMP = Path(__file__).resolve().parents[2] / "shared" / "vnncomp"
VNN_FILES = sorted(VNNCOMP.glob("*/onnx/*.onnx")) if VNNCOMP.is_dir() else []


def _close(out: np.ndarray, ref: np.ndarray) -> None:
    tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(out - ref).max())
    assert err <= tol, f"max error {err:.3g} > {tol:.3g}"


def _ort(model_or_path):
    data = model_or_path if isinstance(model_or_path, (str, Path)) else (
        model_or_path.SerializeToString())
    return ort.InferenceSession(str(data) if isinstance(data, Path) else data,
                                providers=["CPUExecutionProvider"])


def _compare_with_ort(graph, sess, rng, n: int = 6, scale: float = 1.0) -> None:
    name = sess.get_inputs()[0].name
    xs = (rng.standard_normal((n, *graph.onnx_input_shape)) * scale).astype(np.float32)
    refs = np.stack([sess.run(None, {name: x})[0].reshape(-1) for x in xs])
    flat = torch.from_numpy(xs.reshape(n, -1))
    with torch.no_grad():
        out = graph(graph.input_from_flat(flat)).reshape(n, -1).numpy()
    _close(out, refs)


# ---------------------------------------------------------------- (a) zoo round trip


def _zoo_cases():
    for arch in list_architectures():
        arch = "fc_2x50" if arch.startswith("fc_<") else arch
        try:
            build_model(arch, (1, 28, 28))
            yield arch, (1, 28, 28)
        except UserError:
            yield arch, (3, 32, 32)


@pytest.mark.parametrize(("arch", "shape"), list(_zoo_cases()))
def test_zoo_round_trip(arch, shape, tmp_path):
    torch.manual_seed(0)
    c = shape[0]
    model = build_model(arch, shape, 10, [0.1 * (i + 1) for i in range(c)], [0.3] * c).eval()
    for m in model.modules():  # non-trivial batch-norm statistics (resnet6)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, shape)
    graph = load_onnx(path)
    assert graph.input_shape == shape and graph.output_shape == (10,)
    x = torch.rand(5, *shape)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- (b) VNN-COMP models


@pytest.mark.skipif(not VNN_FILES, reason="../shared/vnncomp is missing")
@pytest.mark.parametrize("path", VNN_FILES, ids=[p.name for p in VNN_FILES])
def test_vnncomp_models_match_onnxruntime(path):
    graph = load_onnx(path)
    _compare_with_ort(graph, _ort(path), np.random.default_rng(0))


@pytest.mark.skipif(not VNN_FILES, reason="../shared/vnncomp is missing")
def test_acasxu_input_mapping_and_bounds():
    """VNN-LIB's X_0..X_4 are the ONNX input (1, 1, 1, 5) flattened; bounds contain samples."""
    path = next(p for p in VNN_FILES if p.name.startswith("ACASXU_run2a_1_1"))
    graph = load_onnx(path).to(dtype=torch.float64)
    assert graph.onnx_input_shape == (1, 1, 1, 5) and graph.onnx_output_shape == (1, 5)
    lo = torch.tensor([[-0.3, -0.01, -0.5, 0.3, 0.2]], dtype=torch.float64)
    hi = lo + 0.05
    b = compute_bounds(graph, graph.input_from_flat(lo), graph.input_from_flat(hi), method="crown")
    x = lo + (hi - lo) * torch.rand(2000, 5, dtype=torch.float64)
    y = graph(graph.input_from_flat(x))
    assert (y >= b.lower - 1e-9).all() and (y <= b.upper + 1e-9).all()


# ---------------------------------------------------------------- hand-built graphs


def _model(nodes, inits, in_shape, out_shape, opset=13):
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v, dtype=v.dtype), k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


_RNG = np.random.default_rng(1)


def _f(*shape):
    return _RNG.standard_normal(shape).astype(np.float32)


def test_conv_ops_graph_matches_onnxruntime():
    """Sub/Div normalization, BatchNorm, grouped Conv, Pad, pools, Mul, Shape->Reshape."""
    N = helper.make_node
    inits = {
        "mean": _f(1, 2, 1, 1), "std": np.abs(_f(1, 2, 1, 1)) + 0.5,
        "w1": _f(4, 2, 3, 3), "b1": _f(4),
        "g": np.abs(_f(4)) + 0.5, "be": _f(4), "mu": _f(4), "var": np.abs(_f(4)) + 0.5,
        "wg": _f(4, 2, 3, 3), "k": _f(1, 4, 1, 1),
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64),
        "zero": np.array([0], dtype=np.int64), "minus1": np.array([-1], dtype=np.int64),
        "W": _f(36, 7), "B": _f(7),
    }
    nodes = [
        N("Sub", ["x", "mean"], ["s"]), N("Div", ["s", "std"], ["n"]),
        N("Conv", ["n", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[1, 1]),
        N("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], epsilon=1e-3),
        N("Relu", ["bn"], ["r1"]),
        N("Pad", ["r1", "pads"], ["p"]),
        N("Conv", ["p", "wg"], ["c2"], group=2, strides=[2, 2]),
        N("Mul", ["c2", "k"], ["m"]),
        N("Dropout", ["m"], ["d"]),
        N("MaxPool", ["d"], ["mp"], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 1, 1]),
        N("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
        N("Shape", ["ap"], ["sh"]),
        N("Gather", ["sh", "zero"], ["b"], axis=0),
        N("Concat", ["b", "minus1"], ["target"], axis=0),
        N("Reshape", ["ap", "target"], ["flat"]),
        N("MatMul", ["flat", "W"], ["mm"]), N("Add", ["mm", "B"], ["lin"]),
        N("Sigmoid", ["lin"], ["sg"]), N("Identity", ["sg"], ["y"]),
    ]
    model = _model(nodes, inits, [1, 2, 9, 9], [1, 7])
    graph = import_model(model)
    kinds = [type(n).__name__ for n in graph.nodes]
    # Sub+Div fold into one Affine, BatchNorm and Mul into the convs, Add into the Linear
    assert kinds.count("AffineNode") == 1 and "AddNode" not in kinds
    _compare_with_ort(graph, _ort(model), np.random.default_rng(2))


def test_dense_ops_graph_matches_onnxruntime():
    """Layout-only Transpose/Squeeze/Unsqueeze, Gemm variants, Tanh, two-value Add/Sub, Neg."""
    N = helper.make_node
    inits = {
        "ax0": np.array([0], dtype=np.int64), "ax1": np.array([1], dtype=np.int64),
        "A": _f(6, 6), "Bt": _f(6, 5), "C": _f(5), "L": _f(3, 5),
        "shift": _f(1, 6), "two": np.array(2.0, dtype=np.float32),
    }
    nodes = [
        N("Transpose", ["x"], ["t"], perm=[2, 0, 1]),  # (1, 1, 6): moves only size-1 axes
        N("Squeeze", ["t", "ax1"], ["sq"]),  # (1, 6)
        N("Sub", ["sq", "shift"], ["s"]),
        N("Gemm", ["s", "A"], ["g1"], transB=1, alpha=0.5),
        N("Tanh", ["g1"], ["th"]),
        N("Gemm", ["Bt", "th"], ["g2"], transA=1, transB=1, beta=2.0),  # (5, 1) = Bt^T th^T
        N("Gemm", ["th", "Bt", "C"], ["g3"], beta=2.0),  # (1, 5)
        N("Transpose", ["g2"], ["g2t"]),  # (1, 5): layout-only
        N("Sub", ["g3", "g2t"], ["d"]), N("Neg", ["d"], ["nd"]),
        N("Add", ["nd", "g3"], ["a"]), N("Relu", ["a"], ["r"]),
        N("Squeeze", ["r", "ax0"], ["v"]),  # (5,)
        N("MatMul", ["L", "v"], ["lv"]),  # a constant on the left: (3,)
        N("Mul", ["lv", "two"], ["m"]),
        N("Unsqueeze", ["m", "ax0"], ["y"]),
    ]
    model = _model(nodes, inits, [1, 6, 1], [1, 3])
    graph = import_model(model)
    assert graph.input_shape == (6, 1) and graph.output_shape == (3,)
    _compare_with_ort(graph, _ort(model), np.random.default_rng(3))


def test_general_matmul_is_expanded():
    """A matrix (not a row vector) times a constant becomes one dense Linear node; a
    negative Flatten axis counts from the end."""
    N = helper.make_node
    model = _model([N("Flatten", ["x"], ["f"], axis=-1), N("MatMul", ["f", "W"], ["y"])],
                   {"W": _f(4, 3)}, [1, 2, 4], [2, 3])
    graph = import_model(model)
    _compare_with_ort(graph, _ort(model), np.random.default_rng(4))


# ---------------------------------------------------------------- (c) sigmoid / tanh


def _sample_box(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:
    u = torch.rand(n, *lo.shape[1:], dtype=lo.dtype)
    return lo + (hi - lo) * u


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 4, 3, stride=2), nn.Sigmoid(),
            nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3),
        )

    def forward(self, x):
        return self.net(x)


def _dense():
    return nn.Sequential(nn.Linear(4, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 12), nn.Sigmoid(), nn.Linear(12, 3))


@pytest.mark.parametrize(("make", "shape"), [(_dense, (4,)), (_Conv, (1, 7, 7))])
def test_sigmoid_tanh_bounds_contain_samples(make, shape, tmp_path):
    torch.manual_seed(0)
    net = make().eval()
    with torch.no_grad():  # larger weights push neurons into every relaxation case
        for p in net.parameters():
            p.mul_(2.0)
    path = tmp_path / "s.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, *shape),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"])
    graph = load_onnx(path).to(dtype=torch.float64)
    ref = copy.deepcopy(net).double()
    kinds = {type(n) for n in graph.nodes}
    assert SigmoidNode in kinds and TanhNode in kinds
    x0 = torch.rand(3, *shape, dtype=torch.float64)
    eps = torch.tensor([0.01, 0.2, 1.5], dtype=torch.float64).view(3, *[1] * len(shape))
    lo, hi = x0 - eps, x0 + eps
    C = torch.randn(1, 5, 3, dtype=torch.float64)
    crown = compute_bounds(graph, lo, hi, C, method="crown")
    ibp = compute_bounds(graph, lo, hi, C, method="ibp")
    for b in range(3):
        xs = _sample_box(lo[b : b + 1], hi[b : b + 1], 10_000)
        with torch.no_grad():
            ys = graph(xs) @ C[0].T
            torch.testing.assert_close(ys, ref(xs) @ C[0].T, atol=1e-6, rtol=1e-6)
        for bounds in (crown, ibp):
            assert (ys >= bounds.lower[b] - 1e-9).all(), bounds.method
            assert (ys <= bounds.upper[b] + 1e-9).all(), bounds.method
    # the back-substitution rule does real work: CROWN beats IBP on the small box
    assert bool((crown.upper[0] - crown.lower[0] < ibp.upper[0] - ibp.lower[0] - 1e-6).all())


@pytest.mark.parametrize("kind", [SigmoidNode, TanhNode])
def test_s_shape_relaxation_is_sound_and_touches(kind):
    torch.manual_seed(1)
    node = kind(inputs=(0,), shape=(1,))
    a, b = torch.randn(2, 4000, dtype=torch.float64) * 4
    lower, upper = torch.minimum(a, b), torch.maximum(a, b)
    lower[:50] = upper[:50] - 1e-9  # near-point intervals
    la, lb, ua, ub = s_shape_relaxation(node, lower, upper)
    t = torch.rand(257, 1, dtype=torch.float64)
    x = lower + (upper - lower) * torch.cat([t, torch.tensor([[0.0], [1.0]])])
    fx = node.forward(x)
    assert ((la * x + lb) <= fx + 1e-12).all() and ((ua * x + ub) >= fx - 1e-12).all()
    # every line touches the function or its chord end points within its interval (tight)
    gap_lo = (fx - (la * x + lb)).min(0).values
    gap_up = ((ua * x + ub) - fx).min(0).values
    wide = upper - lower > 1e-3
    assert (gap_lo[wide] < 1e-3 * (upper - lower)[wide]).all()
    assert (gap_up[wide] < 1e-3 * (upper - lower)[wide]).all()


# ---------------------------------------------------------------- (d) clear errors


def test_unsupported_op_names_node_and_op():
    model = _model([helper.make_node("LRN", ["x"], ["y"], name="norm1", size=3)], {},
                   [1, 2, 4, 4], [1, 2, 4, 4])
    with pytest.raises(UnsupportedLayerError, match=r"ONNX node 'norm1' \(op LRN\).*supported:"):
        import_model(model)


def test_nonlinear_and_unflatten_errors():
    N = helper.make_node
    prod = _model([N("Mul", ["x", "x"], ["y"], name="sq")], {}, [1, 3], [1, 3])
    with pytest.raises(UnsupportedLayerError, match=r"'sq' \(op Mul\)"):
        import_model(prod)
    unflatten = _model(
        [N("Flatten", ["x"], ["f"]), N("Sub", ["f", "c"], ["s"]),
         N("Reshape", ["s", "shape"], ["r"]),
         N("Conv", ["r", "w"], ["y"], name="conv")],
        {"c": _f(1, 16), "shape": np.array([1, 1, 4, 4], dtype=np.int64), "w": _f(1, 1, 2, 2)},
        [1, 1, 4, 4], [1, 1, 3, 3])
    with pytest.raises(UnsupportedLayerError, match=r"'conv' \(op Conv\).*flattened"):
        import_model(unflatten)
    pooled = _model([N("MaxPool", ["x"], ["y", "idx"], name="mp", kernel_shape=[2, 2]),
                     N("Add", ["y", "idx"], ["z"])], {}, [1, 1, 4, 4], [1, 1, 3, 3])
    pooled.graph.output[0].name = "z"
    with pytest.raises(UnsupportedLayerError, match=r"'mp' \(op MaxPool\).*extra output"):
        import_model(pooled)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(UserError):
        load_onnx(bad)


def test_crown_refines_inputs_of_deeper_s_shaped_nodes(tmp_path):
    """The input of an S-node behind another one gets back-substituted bounds, not IBP's."""
    torch.manual_seed(1)
    net = _dense().eval()
    path = tmp_path / "s.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 4),), str(path), dynamo=False)
    graph = load_onnx(path).to(dtype=torch.float64)
    x0 = torch.rand(2, 4, dtype=torch.float64)
    lo, hi = x0 - 0.3, x0 + 0.3
    crown = compute_bounds(graph, lo, hi, method="crown")
    ibp = compute_bounds(graph, lo, hi, method="ibp")
    s_nodes = [j for j, n in enumerate(graph.nodes) if isinstance(n, (SigmoidNode, TanhNode))]
    deeper = graph.nodes[s_nodes[-1]].inputs[0]
    (cl, cu), (il, iu) = crown.intervals[deeper], ibp.intervals[deeper]
    xs = _sample_box(lo[:1], hi[:1], 10_000)
    with torch.no_grad():
        z = graph.forward_all(xs)[deeper]
    assert (z >= cl[:1] - 1e-9).all() and (z <= cu[:1] + 1e-9).all()
    assert float((cu - cl).mean()) < 0.5 * float((iu - il).mean())
