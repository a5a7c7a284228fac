"""VNN-COMP interfaces: result files, `verifriend vnncomp` end to end, instances.csv."""

from __future__ import annotations

import gzip
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from verifriend.app.vnncomp import format_result, parse_result, read_instances, run_instance
from verifriend.cli import app
from verifriend.errors import UserError
from verifriend.verify.result import Verdict

VNNCOMP = Path(__file__).resolve().parents[2] / "shared" / "vnncomp"
TEST_DIR = VNNCOMP / "test"
SAT_ONNX = TEST_DIR / "onnx" / "test_sat.onnx"
SAT_SPEC = TEST_DIR / "vnnlib" / "test_prop.vnnlib.gz"
needs_test_bench = pytest.mark.skipif(not SAT_ONNX.is_file() or not SAT_SPEC.is_file(),
                                      reason="../shared/vnncomp/test not present")
runner = CliRunner()

floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1.7976931348623157e308, -1e308, 0.1, -2.5e-07])


# ---- format / parse


def test_format_sat_matches_the_vnncomp_layout():
    v = Verdict("sat", 1.0, counterexample=(torch.tensor([0.1, -2.5e-07], dtype=torch.float64),
                                            torch.tensor([3.0], dtype=torch.float64)))
    assert format_result(v) == "sat\n((X_0 0.1)\n (X_1 -2.5e-07)\n (Y_0 3.0))\n"


@pytest.mark.parametrize("status", ["unsat", "timeout", "unknown"])
def test_format_other_statuses_are_one_line(status):
    text = format_result(Verdict(status, 2.0))
    assert text == status + "\n"
    assert parse_result(text) == (status, None, None)


def test_format_sat_without_counterexample_is_refused():
    with pytest.raises(ValueError, match="counterexample"):
        format_result(Verdict("sat", 1.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(floats, min_size=1, max_size=30), st.lists(floats, min_size=1, max_size=12))
def test_format_parse_round_trip_is_exact(xs, ys):
    x, y = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
    status, x2, y2 = parse_result(format_result(Verdict("sat", 0.5, counterexample=(x, y))))
    assert status == "sat"
    assert x2.dtype == y2.dtype == torch.float64
    # bitwise equality, signs of zeros included
    assert x2.numpy().tobytes() == x.numpy().tobytes()
    assert y2.numpy().tobytes() == y.numpy().tobytes()


def test_parse_reads_2021_words_and_smtlib_negatives():
    assert parse_result("holds\n") == ("unsat", None, None)
    status, x, y = parse_result("violated\n((X_0 (- 0.5)) (X_1 1e-3)\n(Y_0 2))")
    assert status == "sat"
    assert x.tolist() == [-0.5, 1e-3] and y.tolist() == [2.0]
    assert parse_result("error") == ("error", None, None)


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("proved\n", "unknown result status"),
    ("sat\n((X_0 1.0)\n (X_2 2.0))", "X_1"),
    ("sat\n((X_0 1.0)\n (X_0 2.0))", "twice"),
    ("sat\n((X_0 abc))", "malformed"),
    ("sat\n((Y_0 1.0))", "no input"),
])
def test_parse_rejects_malformed_files(text, match):
    with pytest.raises(ValueError, match=match):
        parse_result(text)


# ---- run_instance and the CLI, with a fake verifier


def _fake_verify(status="sat"):
    calls = []

    def verify(graph, specs, input_shape, *, timeout, config=None):
        calls.append({"specs": specs, "input_shape": input_shape, "timeout": timeout})
        x = specs[0].lower.clone()
        y = torch.arange(graph.num_outputs, dtype=torch.float64) - 0.25
        return Verdict(status, 0.0, stage="fake", counterexample=(x, y) if status == "sat" else None)

    return verify, calls


@needs_test_bench
def test_run_instance_times_loading_and_passes_what_is_left():
    verify, calls = _fake_verify("unsat")
    v = run_instance(SAT_ONNX, SAT_SPEC, 30.0, verify=verify)
    assert v.status == "unsat" and v.time_s > 0
    (call,) = calls
    assert 0 < call["timeout"] <= 30.0
    assert math.prod(call["input_shape"]) == call["specs"][0].n_inputs == 5


@pytest.fixture
def fake_verifier(monkeypatch):
    """Install a fake `verifriend.verify.verifier` module (whether or not the real one exists)."""
    verify, calls = _fake_verify("sat")
    module = types.ModuleType("verifriend.verify.verifier")
    module.verify_spec = verify
    monkeypatch.setitem(sys.modules, "verifriend.verify.verifier", module)
    return calls


@needs_test_bench
def test_cli_writes_the_result_file(tmp_path, fake_verifier):
    out = tmp_path / "sub" / "result.txt"
    r = runner.invoke(app, ["vnncomp", str(SAT_ONNX), str(SAT_SPEC), "--timeout", "20",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(fake_verifier) == 1 and fake_verifier[0]["timeout"] <= 20
    line = r.output.strip()
    assert len(r.output.strip().splitlines()) == 1
    status, secs, unit = line.split()
    assert status == "sat" and float(secs) >= 0 and unit == "s"
    status, x, y = parse_result(out.read_text())
    assert status == "sat" and x.numel() == 5 and y.tolist() == [-0.25, 0.75, 1.75, 2.75, 3.75]
    assert [p.name for p in out.parent.iterdir()] == ["result.txt"]  # no temp file left


def _assert_one_sentence_error(r, *words):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    msg = r.output.strip()
    assert msg.startswith("error:") and len(msg.splitlines()) <= 3  # rich may wrap long paths
    for w in words:
        assert w in msg.replace("\n", "")


@needs_test_bench
def test_cli_missing_model(tmp_path, fake_verifier):
    r = runner.invoke(app, ["vnncomp", str(tmp_path / "nope.onnx"), str(SAT_SPEC),
                            "--out", str(tmp_path / "r.txt")])
    _assert_one_sentence_error(r, "nope.onnx", "does not exist")
    assert not (tmp_path / "r.txt").exists() and not fake_verifier


@needs_test_bench
def test_cli_missing_spec(tmp_path, fake_verifier):
    r = runner.invoke(app, ["vnncomp", str(SAT_ONNX), str(tmp_path / "nope.vnnlib"),
                            "--out", str(tmp_path / "r.txt")])
    _assert_one_sentence_error(r, "nope.vnnlib")
    assert not (tmp_path / "r.txt").exists() and not fake_verifier


@needs_test_bench
def test_cli_spec_with_wrong_input_size(tmp_path, fake_verifier):
    text = gzip.decompress(SAT_SPEC.read_bytes()).decode()
    text = text.replace("(declare-const Y_0 Real)",
                        "(declare-const X_5 Real)\n(declare-const Y_0 Real)")
    text += "\n(assert (>= X_5 0.0))\n(assert (<= X_5 1.0))\n"
    spec = tmp_path / "six.vnnlib"
    spec.write_text(text)
    r = runner.invoke(app, ["vnncomp", str(SAT_ONNX), str(spec), "--out", str(tmp_path / "r.txt")])
    _assert_one_sentence_error(r, "6 inputs", "has 5")
    assert not fake_verifier


@needs_test_bench
def test_cli_bad_vnnlib(tmp_path, fake_verifier):
    spec = tmp_path / "bad.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1.0)\n")
    r = runner.invoke(app, ["vnncomp", str(SAT_ONNX), str(spec), "--out", str(tmp_path / "r.txt")])
    _assert_one_sentence_error(r, "never closed")


def test_run_instance_rejects_a_bad_timeout():
    with pytest.raises(UserError, match="timeout"):
        run_instance("a.onnx", "b.vnnlib", float("nan"), verify=lambda *a, **k: None)


# ---- instances.csv


@pytest.mark.parametrize("bench, rows", [("mnistfc", 30), ("acasxu", 186), ("verivital", 60),
                                         ("test", 5)])
def test_read_instances_on_the_shared_benchmarks(bench, rows):
    folder = VNNCOMP / bench
    if not (folder / "instances.csv").is_file():
        pytest.skip(f"{folder} not present")
    insts = read_instances(folder)
    assert len(insts) == rows
    for inst in insts:
        assert inst.benchmark == bench
        assert inst.onnx.is_file() and inst.vnnlib.is_file()
        assert inst.timeout_s > 0 and inst.verdict in ("sat", "unsat", "unknown", "")
        assert "abcrown2021_verdict" in inst.extra and "onnx" not in inst.extra


def test_read_instances_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_instances(tmp_path)
    (tmp_path / "instances.csv").write_text("onnx,vnnlib\na.onnx,b.vnnlib\n")
    with pytest.raises(UserError, match="timeout_s, verdict"):
        read_instances(tmp_path)
    (tmp_path / "instances.csv").write_text("onnx,vnnlib,timeout_s,verdict,x\na.onnx,b.vnnlib,ten,,1\n")
    with pytest.raises(UserError, match=":2: timeout_s"):
        read_instances(tmp_path)
    (tmp_path / "instances.csv").write_text("onnx,vnnlib,timeout_s,verdict,x\na.onnx,b.vnnlib,10,,1\n")
    (inst,) = read_instances(tmp_path)
    assert inst.onnx == tmp_path / "a.onnx" and inst.timeout_s == 10.0
    assert inst.verdict == "" and inst.extra == {"x": "1"}
