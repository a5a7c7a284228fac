"""`verifriend sparsify` end to end on a tiny ONNX network and a tiny .npz data set: the
written network keeps every validation label and pattern under onnxruntime, and user
mistakes are one sentence with exit code 2."""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from verifriend.cli import app
from verifriend.sparsify.vnn_lp import forward

runner = CliRunner()


def _net(path, rng, widths=(16, 12, 8, 3), residual=False):
    nodes, inits, x = [helper.make_node("Flatten", ["x"], ["f"], axis=1)], [], "f"
    layers = []
    for k, (i, o) in enumerate(itertools.pairwise(widths)):
        W, b = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32), \
            (rng.standard_normal(o) * 0.1).astype(np.float32)
        layers.append((W.astype(np.float64), b.astype(np.float64)))
        inits += [numpy_helper.from_array(W, f"W{k}"), numpy_helper.from_array(b, f"b{k}")]
        out = "y" if k == len(widths) - 2 else f"z{k}"
        nodes.append(helper.make_node("Gemm", [x, f"W{k}", f"b{k}"], [out], transB=1))
        if out != "y":
            nodes.append(helper.make_node("Relu", [out], [f"a{k}"]))
            x = f"a{k}"
    if residual:  # y = last + relu(z0)[:3] is not a chain
        nodes[-1].output[0] = "y0"
        inits.append(numpy_helper.from_array(np.eye(3, widths[1], dtype=np.float32), "S"))
        nodes += [helper.make_node("Gemm", ["a0", "S"], ["s"], transB=1),
                  helper.make_node("Add", ["y0", "s"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     (1, 1, 4, 4))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return layers


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(0)
    layers = _net(tmp_path / "net.onnx", rng)
    x = rng.uniform(0, 1, (30, 1, 4, 4)).astype(np.float32)
    y = forward(layers, x.reshape(30, -1).astype(np.float64))[-1].argmax(1)
    np.savez(tmp_path / "tiny.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    return tmp_path, layers, x


def _labels_and_patterns(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": xi[None]})[0].argmax(1) for xi in x])


def test_sparsify_keeps_validation_labels_under_onnxruntime(setup):
    tmp, _layers, x = setup
    out = tmp / "net.vnn.onnx"
    r = runner.invoke(app, ["sparsify", str(tmp / "net.onnx"), "--out", str(out), "--dataset",
                            "tiny", "--data-dir", str(tmp), "--val-indices", "0:10",
                            "--baseline", "magnitude", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["validation"] == {"indices": [0, 10], "labels_kept": 10, "of": 10}
    first = res["layers"][0]
    assert first["nonzeros_after"] < first["nonzeros_before"], json.dumps(first)  # 10 samples, 16 inputs
    np.testing.assert_array_equal(_labels_and_patterns(out, x[:10]),
                                  _labels_and_patterns(tmp / "net.onnx", x[:10]))
    assert (tmp / "net.vnn.magnitude.onnx").is_file()
    assert set(res["test_accuracy"]) == {"original", "sparsified", "magnitude"}


def test_output_layer_option_keeps_labels_under_onnxruntime(setup):
    tmp, layers, x = setup
    out = tmp / "net.out.onnx"
    r = runner.invoke(app, ["sparsify", str(tmp / "net.onnx"), "--out", str(out), "--dataset",
                            "tiny", "--data-dir", str(tmp), "--val-indices", "0:10",
                            "--output-layer", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert [lay["kind"] for lay in res["layers"]] == ["dense", "dense", "output"]
    last = res["layers"][-1]
    assert last["nonzeros_before"] == layers[-1][0].size
    np.testing.assert_array_equal(_labels_and_patterns(out, x[:10]),
                                  _labels_and_patterns(tmp / "net.onnx", x[:10]))


@pytest.mark.parametrize(("args", "words"), [
    (["--eps", "1.5"], "--eps"),
    (["--val-indices", "5"], "--val-indices"),
    (["--val-indices", "10:5"], "--val-indices"),
    (["--val-indices", "0:999"], "runs past"),
    (["--baseline", "random"], "--baseline"),
])
def test_bad_options_are_one_sentence(setup, args, words):
    tmp, _, _ = setup
    out = tmp / "o.onnx"
    r = runner.invoke(app, ["sparsify", str(tmp / "net.onnx"), "--out", str(out), "--dataset",
                            "tiny", "--data-dir", str(tmp), *args])
    assert r.exit_code == 2 and "Traceback" not in r.output and words in r.output, r.output
    assert not out.exists()


def test_networks_it_cannot_rewrite_are_refused(setup):
    tmp, _, _ = setup
    _net(tmp / "res.onnx", np.random.default_rng(1), residual=True)
    base = ["--dataset", "tiny", "--data-dir", str(tmp)]
    r = runner.invoke(app, ["sparsify", str(tmp / "res.onnx"), "--out", str(tmp / "o.onnx"), *base])
    assert r.exit_code == 2 and "residual" in r.output, r.output
    r = runner.invoke(app, ["sparsify", str(tmp / "net.onnx"), "--out", str(tmp / "o.pt"), *base])
    assert r.exit_code == 2 and "format it reads" in r.output, r.output
    r = runner.invoke(app, ["sparsify", str(tmp / "net.onnx"), "--out", str(tmp), *base])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output


def test_a_checkpoint_comes_back_as_a_checkpoint(setup):
    """fc_2x12 with a non-trivial normalization: the normalization is folded, the new .pt
    loads as the same architecture and keeps every validation label."""
    import torch

    from verifriend.app.artifacts import save_model
    from verifriend.models.io import load_model
    from verifriend.models.zoo import build_model

    tmp, _, x = setup
    torch.manual_seed(0)
    model = build_model("fc_2x12", (1, 4, 4), 3, [0.4], [0.3]).eval()
    save_model(model, tmp / "fc.pt", arch="fc_2x12", input_shape=(1, 4, 4), num_classes=3,
               dataset="tiny", mean=[0.4], std=[0.3])
    r = runner.invoke(app, ["sparsify", str(tmp / "fc.pt"), "--out", str(tmp / "fc.vnn.pt"),
                            "--dataset", "tiny", "--data-dir", str(tmp), "--val-indices", "0:10",
                            "--workers", "1", "--baseline", "magnitude", "--json"])
    assert r.exit_code == 0, r.output
    new, meta = load_model(tmp / "fc.vnn.pt")
    assert meta["arch"] == "fc_2x12" and meta["mean"] == [0.0] and meta["std"] == [1.0]
    xt = torch.from_numpy(x[:10])
    with torch.no_grad():
        assert torch.equal(new(xt).argmax(1), model(xt).argmax(1))
    assert json.loads(r.output)["layers"][0]["nonzeros_after"] < 16 * 12
    assert (tmp / "fc.vnn.magnitude.pt").is_file()
