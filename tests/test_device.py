"""``--device`` on every command that bounds, attacks or trains: a clear refusal when the
device is not there, and the same results on the GPU as on the CPU where there is one.

The CPU/GPU comparisons need a CUDA GPU and are skipped on machines without one (a missing
device, not a slow machine); the refusals are checked where there is none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from verifriend.bounds.frontends.onnx import load_onnx
from verifriend.cli import app
from verifriend.specs.vnnlib import read_vnnlib
from verifriend.verify.verifier import verify_spec

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEST_BENCH = SHARED / "vnncomp" / "test"
MNISTFC = SHARED / "vnncomp" / "mnistfc"
VNNLP = SHARED / "vnnlp" / "mnist_relu_2_50.onnx"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
needs_bench = pytest.mark.skipif(not TEST_BENCH.is_dir(), reason="../shared/vnncomp/test absent")
runner = CliRunner()

SAT = (TEST_BENCH / "onnx" / "test_sat.onnx", TEST_BENCH / "vnnlib" / "test_prop.vnnlib.gz")
UNSAT = (TEST_BENCH / "onnx" / "test_unsat.onnx", TEST_BENCH / "vnnlib" / "test_prop.vnnlib.gz")


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    onnx, spec = map(str, SAT)
    return {
        "bounds": ["bounds", onnx, spec],
        "vnncomp": ["vnncomp", onnx, spec, "--out", str(tmp_path / "r.txt"), "--timeout", "30"],
        "verify": ["verify", "--model", str(VNNLP), "--eps", "0.01", "--timeout", "1",
                   "--indices", "0:2", "--out", str(tmp_path / "v.jsonl")],
        "evaluate": ["evaluate", str(VNNLP), "--eps", "0.01", "--indices", "0:2",
                     "--pgd-steps", "1", "--test-limit", "10"],
    }


@needs_bench
@pytest.mark.parametrize("command", ["bounds", "vnncomp", "verify", "evaluate"])
def test_a_device_that_is_not_cpu_or_cuda_is_one_sentence(tmp_path, command):
    r = runner.invoke(app, [*_commands(tmp_path)[command], "--device", "tpu"])
    assert r.exit_code == 2, r.output
    assert "--device must be cpu or cuda" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "v.jsonl").exists() and not (tmp_path / "r.txt").exists()


@no_cuda
@needs_bench
@pytest.mark.parametrize("command", ["bounds", "vnncomp", "verify", "evaluate"])
def test_cuda_without_a_gpu_is_one_sentence_and_writes_nothing(tmp_path, command):
    r = runner.invoke(app, [*_commands(tmp_path)[command], "--device", "cuda"])
    assert r.exit_code == 2, r.output
    assert "sees no CUDA GPU" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "v.jsonl").exists() and not (tmp_path / "r.txt").exists()


@needs_bench
def test_bounds_on_the_cpu_device_are_the_default_ones():
    onnx, spec = map(str, SAT)
    default = runner.invoke(app, ["bounds", onnx, spec, "--json"])
    cpu = runner.invoke(app, ["bounds", onnx, spec, "--json", "--device", "cpu"])
    assert default.exit_code == cpu.exit_code == 0, default.output + cpu.output
    a, b = json.loads(default.output), json.loads(cpu.output)
    assert a["constraints"] == b["constraints"]


# ---------------------------------------------------------------- on a CUDA GPU


@cuda
@needs_bench
@pytest.mark.parametrize("method", ["ibp", "crown", "alpha"])
def test_bounds_agree_on_cpu_and_cuda(method):
    onnx, spec = map(str, UNSAT)
    out = {}
    for device in ("cpu", "cuda"):
        r = runner.invoke(app, ["bounds", onnx, spec, "--json", "--method", method,
                                "--device", device])
        assert r.exit_code == 0, r.output
        out[device] = json.loads(r.output)["constraints"]
    for c, g in zip(out["cpu"], out["cuda"]):
        assert c["clause"] == g["clause"]
        assert c["lower"] == pytest.approx(g["lower"], rel=1e-4, abs=1e-4)
        assert c["upper"] == pytest.approx(g["upper"], rel=1e-4, abs=1e-4)


def _instances(folder: Path, n: int) -> list[tuple[Path, Path, str]]:
    import csv

    with open(folder / "instances.csv") as f:
        rows = list(csv.DictReader(f))[:n]
    return [(folder / r["onnx"], folder / r["vnnlib"], r["verdict"]) for r in rows]


@cuda
@pytest.mark.skipif(not MNISTFC.is_dir(), reason="../shared/vnncomp/mnistfc absent")
def test_the_verifier_decides_the_same_on_cpu_and_cuda():
    """The complete verifier (attack, alpha-CROWN, BaB with its float64 gate, MILP leaves on
    the CPU) gives the same verdicts on the GPU, and every sat replays on the CPU."""
    for onnx, vnnlib, truth in _instances(TEST_BENCH, 5) + _instances(MNISTFC, 6):
        graph, specs = load_onnx(onnx), read_vnnlib(vnnlib)
        got = {dev: verify_spec(graph.to(device=dev), specs, graph.input_shape, timeout=60)
               for dev in ("cpu", "cuda")}
        assert got["cpu"].status == got["cuda"].status, (onnx.name, vnnlib.name)
        assert got["cuda"].status in (truth, "timeout", "unknown"), (onnx.name, vnnlib.name)
        if got["cuda"].status == "sat":
            x = got["cuda"].counterexample[0].reshape(1, *graph.input_shape)
            y = graph.to(dtype=torch.float64)(x.double()).reshape(-1)
            assert any(s.is_violated(y) for s in specs)


@cuda
def test_a_campaign_gives_the_same_verdicts_on_cpu_and_cuda(tmp_path):
    rows = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.jsonl"
        r = runner.invoke(app, ["verify", "--model", str(VNNLP), "--eps", "0.03", "--timeout",
                                "20", "--indices", "0:20", "--out", str(out), "--json",
                                "--device", device])
        assert r.exit_code == 0, r.output
        rows[device] = [json.loads(s) for s in out.read_text().splitlines()[1:]]
    assert [(r["index"], r["status"]) for r in rows["cpu"]] == \
        [(r["index"], r["status"]) for r in rows["cuda"]]
