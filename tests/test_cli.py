"""The command line: user mistakes give one sentence and exit code 2; jobs write their files."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from verifriend.app.outputs import write_json_atomic
from verifriend.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_user_error(result, *words: str):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    msg = result.output.lower()
    for w in words:
        assert w.lower() in msg, msg


@pytest.mark.parametrize(
    "cmd", ["demo", "train", "evaluate", "export", "zoo", "bounds", "vnncomp", "verify",
            "experiment"]
)
def test_every_command_has_help_with_example(cmd):
    r = run(cmd, "--help")
    assert r.exit_code == 0
    assert "Example: verifriend " + cmd in r.output


def test_unknown_architecture(tmp_path):
    r = run("train", "--arch", "cnn_5layer", "--out", str(tmp_path))
    assert_user_error(r, "cnn_5layer")


def test_negative_eps(tmp_path):
    r = run("train", "--eps", "-0.1", "--out", str(tmp_path), "--epochs", "1")
    assert_user_error(r, "eps")
    r = run("demo", "--eps", "-1", "--out", str(tmp_path))
    assert_user_error(r, "eps")


def test_foreign_checkpoint(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    assert_user_error(run("evaluate", str(foreign)), "foreign.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert_user_error(run("export", str(text), str(tmp_path / "x.onnx")), "notes.pt")
    assert_user_error(run("evaluate", str(tmp_path / "missing.pt")), "missing.pt")


def test_missing_data_set(tmp_path, monkeypatch):
    from verifriend.data import locate

    monkeypatch.delenv("VERIFRIEND_DATA", raising=False)
    monkeypatch.setattr(locate, "shared_datasets_dirs", list)
    r = run("train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert_user_error(r, "mnist", str(tmp_path))


def test_train_evaluate_export_round_trip(tmp_path):
    out = tmp_path / "run"
    r = run("train", "--method", "nbc", "--arch", "fc_1x20", "--epochs", "1", "--limit", "256",
            "--eps", "0.1", "--lr", "1e-3", "--out", str(out))
    assert r.exit_code == 0, r.output
    ckpt = out / "model.pt"
    train_json = json.loads((out / "model.train.json").read_text())
    assert train_json["config"]["method"] == "nbc" and len(train_json["history"]) == 1

    r = run("evaluate", str(ckpt), "--eps", "0.01", "--eps", "0.05", "--per-class", "2",
            "--pgd-steps", "5", "--timeout", "5", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert [x["eps"] for x in res["results"]] == [0.01, 0.05]
    for x in res["results"]:
        assert x["n_properties"] == 20
        assert 0 <= x["pgd_acc"] <= x["clean_acc"] <= 100
        assert x["proved_ibp_pct"] <= x["proved_crown_pct"] <= 100
        # the complete verifier: every property decided or timed out, and a proof by CROWN
        # is a proof (the misclassified ones are neither)
        total = x["unsat_pct"] + x["sat_pct"] + x["timeout_pct"] + x["misclassified_pct"]
        assert abs(total - 100) < 1e-6
        assert x["unsat_pct"] >= x["proved_crown_pct"] - 1e-6
        assert x["verify_time_s"] >= 0 and (out / f"model.eps{x['eps']:g}.t5.verify.jsonl").exists()
    # a larger radius can only make stability and proofs rarer
    assert res["results"][1]["stable_pct"] <= res["results"][0]["stable_pct"]

    onnx_path = tmp_path / "m.onnx"
    r = run("export", str(ckpt), str(onnx_path))
    assert r.exit_code == 0, r.output and onnx_path.exists()


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_help_paragraphs_reflow_and_keep_angle_brackets():
    wide = {"COLUMNS": "200"}
    r = runner.invoke(app, ["bnn", "bench", "--help"], env=wide)
    # the docstring breaks this sentence after "test"; the help text must not
    assert "one query per correctly classified test image (assumptions)" in r.output, r.output
    r = runner.invoke(app, ["verify", "--help"], env=wide)
    assert "<model stem>.verify.eps<E>.jsonl" in r.output, r.output
