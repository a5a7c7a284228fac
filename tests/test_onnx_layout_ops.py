"""Keras-style ONNX networks: an NHWC input behind a Transpose, TensorFlow "same" (asymmetric)
padding, ceil-mode max pooling, Clip and an asymmetric Pad, checked against onnxruntime,
dense sampling and the exact MILP, and verified end to end through the VNN-COMP path."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifriend.app.vnncomp import run_instance
from verifriend.bounds import compute_bounds
from verifriend.bounds.frontends.onnx import import_model
from verifriend.bounds.ops import MaxPoolNode, PadNode, PermuteNode
from verifriend.errors import UnsupportedLayerError
from verifriend.verify.milp import milp_bounds

N = helper.make_node


def _nhwc_model(seed: int = 0, hw: int = 6) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def f(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    inits = {"w1": f(4, 3, 3, 3), "b1": f(4), "w2": f(3, 4, 2, 2), "lo": np.float32(-0.3),
             "hi": np.float32(0.8), "pads": np.array([0, 0, 0, 1, 0, 0, 1, 0], np.int64)}
    nodes = [
        N("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        # even input, stride 2, "same": one row/column of padding, at the bottom/right
        N("Conv", ["t", "w1", "b1"], ["c1"], strides=[2, 2], auto_pad="SAME_UPPER"),
        N("Clip", ["c1", "lo", "hi"], ["k"]),
        N("MaxPool", ["k"], ["m"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        N("Pad", ["m", "pads"], ["p"]),
        N("Conv", ["p", "w2"], ["c2"], pads=[0, 1, 1, 0]),
        N("Relu", ["c2"], ["r"]),
        N("Flatten", ["r"], ["fl"]),
    ]
    probe = helper.make_model(helper.make_graph(
        nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, hw, hw, 3))],
        [helper.make_tensor_value_info("fl", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()]),
        opset_imports=[helper.make_opsetid("", 13)])
    probe.ir_version = 8
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    width = sess.run(None, {"x": np.zeros((1, hw, hw, 3), np.float32)})[0].shape[1]
    inits["w3"] = f(width, 3, scale=1.0)
    nodes.append(N("MatMul", ["fl", "w3"], ["y"]))
    g = helper.make_graph(
        nodes, "keras_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, hw, hw, 3))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _ort_run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": r[None]})[0] for r in x.astype(np.float32)])


def test_keras_like_network_imports_and_matches_onnxruntime():
    m = _nhwc_model()
    graph = import_model(m, dtype=torch.float64)
    kinds = {type(n) for n in graph.nodes}
    assert {PermuteNode, PadNode, MaxPoolNode} <= kinds
    assert any(isinstance(n, MaxPoolNode) and n.extra != (0, 0) for n in graph.nodes)
    x = np.random.default_rng(1).uniform(-1, 1, (40, 6, 6, 3))
    ref = _ort_run(m, x)
    flat = torch.from_numpy(x.reshape(40, -1))
    with torch.no_grad():
        out = graph(graph.input_from_flat(flat)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha"])
def test_bounds_contain_samples_and_the_exact_milp_optimum(method):
    graph = import_model(_nhwc_model(), dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    center = torch.rand(1, 108, generator=gen, dtype=torch.float64)
    lo, hi = graph.input_from_flat(center - 0.05), graph.input_from_flat(center + 0.05)
    b = compute_bounds(graph, lo, hi, method=method)
    xs = lo + (hi - lo) * torch.rand(4000, *lo.shape[1:], generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = graph(xs)
    assert (y >= b.lower - 1e-9).all() and (y <= b.upper + 1e-9).all()
    exact = milp_bounds(graph, lo, hi, None)[0]  # the exact minimum of each output
    assert (b.lower[0] <= exact + 1e-7).all() and (exact <= y.min(0).values + 1e-7).all()


def test_an_nhwc_network_verifies_through_the_vnncomp_path(tmp_path):
    """A small box is proved (unsat); a large one yields a counterexample that onnxruntime
    replays (sat)."""
    m = _nhwc_model()
    net = tmp_path / "nhwc.onnx"
    onnx.save(m, net)
    x0 = np.random.default_rng(3).uniform(0, 1, (6, 6, 3))
    y0 = _ort_run(m, x0[None])[0]
    top, other = int(np.argmax(y0)), int(np.argmin(y0))

    def spec(eps: float) -> str:
        lines = [f"(declare-const X_{i} Real)" for i in range(108)]
        lines += [f"(declare-const Y_{j} Real)" for j in range(3)]
        for i, v in enumerate(x0.reshape(-1)):
            lines += [f"(assert (>= X_{i} {v - eps:.9f}))", f"(assert (<= X_{i} {v + eps:.9f}))"]
        lines.append(f"(assert (>= Y_{other} Y_{top}))")  # violated iff `other` catches up
        path = tmp_path / f"eps{eps}.vnnlib"
        path.write_text("\n".join(lines) + "\n")
        return path

    assert run_instance(net, spec(0.001), 60.0).status == "unsat"
    big = run_instance(net, spec(1.0), 60.0)
    assert big.status == "sat"


def test_layout_errors_name_the_node():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((12, 2)).astype(np.float32), "w")
    g = helper.make_graph(
        [N("Flatten", ["x"], ["f"]), N("MatMul", ["f", "w"], ["h"]),
         N("Transpose", ["h"], ["y"], perm=[1, 0])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2, 2, 3))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 1))], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    graph = import_model(m)  # moving a size-1 batch axis is only a relabelling
    assert graph.output_shape == (2,)
    g2 = helper.make_graph(
        [N("Transpose", ["x"], ["t"], perm=[1, 0, 2, 3]), N("Flatten", ["t"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 2, 2, 3))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 12))])
    m2 = helper.make_model(g2, opset_imports=[helper.make_opsetid("", 13)])
    m2.ir_version = 8
    with pytest.raises(UnsupportedLayerError, match="Transpose"):
        import_model(m2)


def test_an_opset_9_flatten_on_constant_shapes_imports():
    """An opset-9 file (as the MN-BaB ResNets are) flattens through Shape, Gather, Unsqueeze
    with an ``axes`` attribute, Concat and Reshape: the constant parts are evaluated under the
    file's opset (Unsqueeze's axes became an input in opset 13), and the import matches
    onnxruntime."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((3, 2 * 4 * 4)).astype(np.float32), "fc")
    bias = numpy_helper.from_array(np.zeros(3, dtype=np.float32), "bias")
    zero = numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")
    minus1 = numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1")
    nodes = [
        N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        N("Relu", ["c"], ["r"]),
        N("Shape", ["r"], ["s"]),
        N("Gather", ["s", "zero"], ["b"], axis=0),
        N("Unsqueeze", ["b"], ["b1"], axes=[0]),
        N("Concat", ["b1", "minus1"], ["shape"], axis=0),
        N("Reshape", ["r", "shape"], ["f"]),
        N("Gemm", ["f", "fc", "bias"], ["y"], transB=1),
    ]
    g = helper.make_graph(nodes, "opset9", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 3])], [w, fc, bias, zero, minus1])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    m.ir_version = 4
    onnx.checker.check_model(m)
    graph = import_model(m)
    x = rng.standard_normal((5, 1, 4, 4))
    got = graph(torch.from_numpy(x).float()).detach().numpy()
    np.testing.assert_allclose(got, _ort_run(m, x), rtol=1e-5, atol=1e-5)
