"""`verifriend global` end to end on a tiny checkpoint and a tiny ONNX network, the
regularizer's gradients and `train --method global`, and one sentence (exit 2) per user
mistake."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from verifriend.bounds import from_module
from verifriend.cli import app
from verifriend.globalrob.exact import twin_milp
from verifriend.globalrob.regularizer import global_regularizer
from verifriend.models.io import checkpoint, onnx_bytes
from verifriend.models.zoo import build_model

runner = CliRunner()


def _tiny(tmp_path):
    torch.manual_seed(0)
    model = build_model("fc_2x8", (1, 2, 2), 3, (0.5,), (0.5,)).eval()
    path = tmp_path / "tiny.pt"
    torch.save(checkpoint(model, arch="fc_2x8", input_shape=(1, 2, 2), num_classes=3,
                          dataset="tiny", mean=(0.5,), std=(0.5,)), path)
    return model, path


def test_global_json_is_sound_against_the_exact_value(tmp_path):
    model, path = _tiny(tmp_path)
    res = runner.invoke(app, ["global", str(path), "--delta", "0.1", "--outputs", "0,2",
                              "--timeout", "3", "--attack-starts", "0", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["delta"] == 0.1 and [r["output"] for r in out["outputs"]] == [0, 2]
    graph = from_module(model, (1, 2, 2))
    for r in out["outputs"]:
        exact = twin_milp(graph, 0.1, r["output"]).value
        assert r["attack_lower"] <= exact + 1e-6 <= r["certified"] + 2e-6
        assert r["certified"] == min(r["input_free"], r["input_aware"], r["bab"])
        assert r["input_aware"] <= r["input_free"] + 1e-12
        assert r["time_s"] <= 3.5 and r["domains"] >= 1
        bounds = [b for _, b, _ in r["trace"]]
        assert bounds == sorted(bounds, reverse=True)


def test_global_table_and_onnx(tmp_path):
    model, _path = _tiny(tmp_path)
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(onnx_bytes(model, (1, 2, 2)))
    res = runner.invoke(app, ["global", str(onnx_path), "--delta", "0.05", "--outputs", "1",
                              "--timeout", "2", "--attack-starts", "0"])
    assert res.exit_code == 0, res.output
    assert "global robustness, delta 0.05" in res.stdout and "PGD" in res.stdout


@pytest.mark.parametrize("args,words", [
    (["--delta", "0"], "--delta must be in"),
    (["--delta", "2"], "--delta must be in"),
    (["--delta", "0.1", "--outputs", "7"], "outputs 0..2"),
    (["--delta", "0.1", "--outputs", "a,b"], "--outputs must list"),
    (["--delta", "0.1", "--domain", "1:0"], "--domain must be LOW:HIGH"),
    (["--delta", "0.1", "--timeout", "0"], "--timeout must be"),
    (["--delta", "0.1", "--device", "tpu"], "--device must be cpu or cuda"),
])
def test_global_user_mistakes_are_one_sentence(tmp_path, args, words):
    _, path = _tiny(tmp_path)
    res = runner.invoke(app, ["global", str(path), *args])
    assert res.exit_code == 2, res.output
    assert words in res.output and "Traceback" not in res.output


def test_global_refuses_a_missing_or_unknown_model(tmp_path):
    bad = tmp_path / "net.txt"
    bad.write_text("x")
    res = runner.invoke(app, ["global", str(bad), "--delta", "0.1"])
    assert res.exit_code == 2 and "neither" in res.output


def test_regularizer_is_the_certified_width_and_has_gradients():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2))
    graph = from_module(model, (3,), detach=False)
    reg = global_regularizer(graph, 0.1)
    reg.backward()
    assert model[0].weight.grad is not None and float(model[0].weight.grad.abs().sum()) > 0
    # R = mean over outputs of (ub - lb), and ub >= the exact value of each output
    g = from_module(model, (3,))
    exact = [twin_milp(g, 0.1, j).value for j in range(2)]
    assert float(reg.detach()) / 2 >= sum(exact) / 2 - 1e-6
    # shrinking the weights shrinks it
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    assert float(global_regularizer(from_module(model, (3,)), 0.1)) < float(reg.detach())


def test_train_method_global_lowers_the_regularizer(tmp_path):
    """`train --method global` on the embedded MNIST subset: a larger lambda gives a
    network with a smaller regularizer (the bound it trains)."""
    from verifriend.app.loaded import load_model_file

    regs = []
    for weight in ("0", "10"):
        out = tmp_path / f"g{weight}"
        res = runner.invoke(app, ["train", "--arch", "fc_1x16", "--method", "global",
                                  "--global-weight", weight, "--eps", "0.02", "--epochs", "1",
                                  "--limit", "512", "--lr", "1e-3", "--out", str(out)])
        assert res.exit_code == 0, res.output
        m = load_model_file(out / "model.pt")
        regs.append(float(global_regularizer(m.graph, 0.02)))
    assert regs[1] < 0.8 * regs[0]
