"""VNN rewrite of convolutions (one LP per output channel, weight sharing kept): the layer's
rows against torch's convolution, tiny CNNs whose validation patterns stay exactly as they
were, the exactly-determined shortcut, and CNN files in and out (ONNX under onnxruntime, a
checkpoint with its own normalization and zero padding)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from verifriend.cli import app
from verifriend.sparsify.layers import Conv, Dense
from verifriend.sparsify.network import onnx_bytes
from verifriend.sparsify.vnn_lp import (
    forward,
    magnitude_prune,
    neuron_lp,
    neuron_lps,
    row_bounds,
    sparsify,
)

runner = CliRunner()


def _cnn(rng, c_in=1, hw=6, ch=(3, 4), k=3, classes=3):
    """Conv(k, stride 1, pad 1) - ReLU - Conv(k, stride 2, pad 0) - ReLU - Dense."""
    c1 = Conv(rng.standard_normal((ch[0], c_in, k, k)) / k, rng.standard_normal(ch[0]) * 0.1,
              (1, 1), (1, 1), (c_in, hw, hw))
    h1 = c1.out_hw[0]
    c2 = Conv(rng.standard_normal((ch[1], ch[0], k, k)) / (k * np.sqrt(ch[0])),
              rng.standard_normal(ch[1]) * 0.1, (2, 2), (0, 0), (ch[0], h1, h1))
    n = ch[1] * int(np.prod(c2.out_hw))
    return [c1, c2, Dense(rng.standard_normal((classes, n)) / np.sqrt(n), np.zeros(classes))]


def test_conv_rows_reproduce_torch_and_every_position():
    rng = np.random.default_rng(0)
    conv = _cnn(rng)[1]
    a = np.maximum(rng.standard_normal((5, 3 * 36)), 0)
    a[:, :36] = 0  # equal fields on channel 0: rows get deduplicated
    z = conv.apply(a)
    ref = F.conv2d(torch.from_numpy(a).reshape(5, 3, 6, 6), torch.from_numpy(conv.K),
                   torch.from_numpy(conv.b), 2, 0).reshape(5, -1).numpy()
    np.testing.assert_allclose(z, ref, rtol=1e-12)
    rows, targets, start, info = conv.prepare(a, z, max_rows=10_000)
    assert start is None and info["positions"] == 5 * 4 and info["rows"] == info["distinct"] <= 20
    for c in range(conv.units):  # each row with its channel's target is a real (field, z)
        np.testing.assert_allclose(rows @ conv.K[c].reshape(-1) + conv.b[c], targets[:, c],
                                   atol=1e-12)
    same, _, start, info = conv.prepare(a, z, max_rows=7)
    np.testing.assert_array_equal(same, rows)  # every row stays; the LP starts from 7
    assert info["rows"] == len(start) == len(set(start.tolist())) == 7 and start.max() < len(rows)
    assert list(conv.unit_index) == [c for c in range(4) for _ in range(4)]


@pytest.mark.parametrize(("seed", "eps"), [(0, 0.0), (1, 0.2), (2, 0.5)])
def test_tiny_cnns_keep_every_validation_pattern(seed, eps):
    rng = np.random.default_rng(seed)
    layers = _cnn(rng)
    x = rng.uniform(0, 1, (6, 36))  # 6 samples x 36 positions: fewer distinct rows than fields
    new, reps = sparsify(layers, x, eps=eps)
    for z0, z1 in zip(forward(layers, x)[:-1], forward(new, x)[:-1]):
        np.testing.assert_array_equal(z0 > 0, z1 > 0)
    np.testing.assert_array_equal(forward(layers, x)[-1].argmax(1), forward(new, x)[-1].argmax(1))
    assert [r.kind for r in reps] == ["conv", "conv"]
    # the second conv's LP has 24 rows (6 samples x 4 positions) for 37 variables: sparser
    assert reps[1].rows["rows"] == 24 and reps[1].nonzeros_after < reps[1].nonzeros_before
    for old, layer in zip(layers, new):  # weight sharing kept: the same kernel shapes
        assert layer.weights.shape == old.weights.shape
    # each channel's LP optimum is no larger in L1 than the original kernel (the first layer
    # sees the same inputs before and after, so its LP is the one solved here)
    conv = layers[0]
    rows, targets, _, _ = conv.prepare(x, conv.apply(x), 4000)
    for c in range(conv.units):
        sol = neuron_lp(rows, *row_bounds(targets[:, c], eps, 1e-6))
        if sol is not None:
            assert np.abs(sol[0]).sum() + abs(sol[1]) <= \
                np.abs(conv.K[c]).sum() + abs(conv.b[c]) + 1e-7


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_lps_started_from_some_rows_end_at_an_optimum_of_all(eps):
    """Constraint generation: started from 15 of the rows, the optimum holds on every row and
    has the L1 norm of the LP over all rows."""
    rng = np.random.default_rng(7)
    a = np.maximum(rng.standard_normal((300, 12)), 0)
    bounds = [row_bounds(a @ rng.standard_normal(12) + 0.2, eps, 1e-6) for _ in range(4)]
    full = neuron_lps(a, bounds)
    part = neuron_lps(a, bounds, start=np.arange(0, 300, 20))
    for (lo, hi), f, p in zip(bounds, full, part):
        z = a @ p[0] + p[1]
        assert (z >= lo - 1e-7).all() and (z <= hi + 1e-7).all()
        assert np.abs(p[0]).sum() + abs(p[1]) == pytest.approx(np.abs(f[0]).sum() + abs(f[1]),
                                                             rel=1e-7)


def test_equality_rows_that_determine_the_kernel_run_no_lp():
    rng = np.random.default_rng(4)
    layers = _cnn(rng, ch=(2, 2), k=2)
    x = rng.uniform(0, 1, (40, 36))
    new, reps = sparsify(layers, x, eps=0.0)
    assert reps[0].rows.get("determined") and reps[0].lps == 0
    np.testing.assert_array_equal(new[0].K, layers[0].K)


def test_magnitude_baseline_prunes_kernels_too():
    layers = _cnn(np.random.default_rng(5))
    pruned = magnitude_prune(layers, [5, 9])
    assert [np.count_nonzero(p.weights) for p in pruned[:2]] == [5, 9]
    np.testing.assert_array_equal(pruned[2].W, layers[2].W)


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: xi[None].astype(np.float32)})[0] for xi in x])


def test_a_cnn_onnx_file_round_trips_with_its_normalization(tmp_path):
    rng = np.random.default_rng(6)
    layers = _cnn(rng)
    pre = (np.full(36, 1 / 0.3), np.full(36, -0.4 / 0.3))  # (x - 0.4) / 0.3 before zero padding
    (tmp_path / "cnn.onnx").write_bytes(onnx_bytes(layers, "x", (1, 1, 6, 6), "y", pre))
    x = rng.uniform(0, 1, (30, 1, 6, 6)).astype(np.float32)
    flat = x.reshape(30, -1).astype(np.float64)
    np.testing.assert_allclose(_ort(tmp_path / "cnn.onnx", x),
                               forward(layers, flat * pre[0] + pre[1])[-1], atol=1e-4)
    y = _ort(tmp_path / "cnn.onnx", x).argmax(1)
    np.savez(tmp_path / "tiny.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    r = runner.invoke(app, ["sparsify", str(tmp_path / "cnn.onnx"), "--out",
                            str(tmp_path / "cnn.vnn.onnx"), "--eps", "0.3", "--dataset", "tiny",
                            "--data-dir", str(tmp_path), "--val-indices", "0:8", "--workers", "1",
                            "--baseline", "magnitude", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert [lay["kind"] for lay in res["layers"]] == ["conv", "conv"]
    assert res["validation"]["labels_kept"] == 8
    np.testing.assert_array_equal(_ort(tmp_path / "cnn.vnn.onnx", x[:8]).argmax(1), y[:8])
    assert (tmp_path / "cnn.vnn.magnitude.onnx").is_file()


def test_a_cnn_checkpoint_keeps_its_normalization(tmp_path):
    from verifriend.app.artifacts import save_model
    from verifriend.models.io import load_model
    from verifriend.models.zoo import build_model

    torch.manual_seed(0)
    model = build_model("cnn_4layer", (1, 12, 12), 3, [0.4], [0.3]).eval()
    save_model(model, tmp_path / "c.pt", arch="cnn_4layer", input_shape=(1, 12, 12),
               num_classes=3, dataset="tiny", mean=[0.4], std=[0.3])
    x = torch.rand(20, 1, 12, 12)
    with torch.no_grad():
        y = model(x).argmax(1)
    np.savez(tmp_path / "tiny.npz", x_train=x.numpy(), y_train=y.numpy(), x_test=x.numpy(),
             y_test=y.numpy())
    r = runner.invoke(app, ["sparsify", str(tmp_path / "c.pt"), "--out", str(tmp_path / "v.pt"),
                            "--dataset", "tiny", "--data-dir", str(tmp_path), "--val-indices",
                            "0:10", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    new, meta = load_model(tmp_path / "v.pt")
    assert meta["mean"] == [0.4] and meta["std"] == [0.3]
    res = json.loads(r.output)
    assert [lay["kind"] for lay in res["layers"]] == ["conv", "conv", "dense"]
    assert res["layers"][2]["nonzeros_after"] < res["layers"][2]["nonzeros_before"]
    with torch.no_grad():
        assert torch.equal(new(x[:10]).argmax(1), y[:10])
