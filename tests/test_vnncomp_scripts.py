"""The VNN-COMP harness scripts (scripts/vnncomp/prepare_instance.sh, run_instance.sh): the
competition's calling convention, on the shared `test` benchmark, with every verdict as the
ground truth says and every counterexample replayed through onnxruntime."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from verifriend.app.vnncomp import parse_result, read_instances

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "vnncomp"
PREPARE, RUN = SCRIPTS / "prepare_instance.sh", SCRIPTS / "run_instance.sh"
TEST_DIR = Path(__file__).resolve().parents[2] / "shared" / "vnncomp" / "test"
needs_test_bench = pytest.mark.skipif(not (TEST_DIR / "instances.csv").is_file(),
                                      reason="../shared/vnncomp/test not present")


@pytest.fixture
def env(tmp_path):
    """The scripts' environment: the verifier found next to them (no $VERIFRIEND), and a
    private pid file, so that prepare_instance.sh never touches another run's verifier."""
    e = {k: v for k, v in os.environ.items() if k != "VERIFRIEND"}
    e["VERIFRIEND_VNNCOMP_PIDFILE"] = str(tmp_path / "verifier.pid")
    return e


def sh(script: Path, *args, env, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *map(str, args)], check=False, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_scripts_are_executable():
    for script in (PREPARE, RUN):
        assert os.access(script, os.X_OK), script


def check_counterexample(onnx_path: Path, vnnlib_path: Path, x, y) -> None:
    """What the competition's checker asks of a sat result: the input in the spec's box,
    the listed output what the network computes there, and that output unsafe."""
    import onnxruntime as ort

    from verifriend.specs.vnnlib import read_vnnlib

    specs = read_vnnlib(vnnlib_path)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    out = sess.run(None, {inp.name: x.numpy().astype(np.float32).reshape(shape)})[0]
    out = out.reshape(-1).astype(np.float64)
    assert y is not None and np.allclose(out, y.numpy(), rtol=1e-4, atol=1e-5), (out, y)
    inside = [s for s in specs
              if bool(((x >= s.lower - 1e-9) & (x <= s.upper + 1e-9)).all())]
    assert inside, "the counterexample lies outside every input box of the spec"
    assert any(s.is_violated(out) for s in inside), "the network's output there is safe"


@needs_test_bench
def test_prepare_and_run_every_test_instance(tmp_path, env):
    """Each instance as a harness runs it: prepare (exit 0), run, then read the result."""
    for k, inst in enumerate(read_instances(TEST_DIR)):
        args = ("v1", "test", inst.onnx, inst.vnnlib)
        r = sh(PREPARE, *args, env=env)
        assert r.returncode == 0, r.stderr
        out = tmp_path / f"result_{k}.txt"
        r = sh(RUN, *args, out, inst.timeout_s, env=env, timeout=inst.timeout_s + 30)
        assert r.returncode == 0, r.stderr
        status, x, y = parse_result(out.read_text())
        assert status == inst.verdict, (inst.onnx.name, inst.vnnlib.name, out.read_text())
        if status == "sat":
            assert out.read_text().startswith("sat\n((X_0 ")
            check_counterexample(inst.onnx, inst.vnnlib, x, y)
        else:
            assert x is None and out.read_text() == status + "\n"


@pytest.mark.parametrize("script, n_args", [(PREPARE, 4), (RUN, 6)])
def test_version_other_than_v1_is_refused(script, n_args, tmp_path, env):
    args = ["v2", "test", tmp_path / "a.onnx", tmp_path / "b.vnnlib", tmp_path / "r.txt", 5]
    r = sh(script, *args[:n_args], env=env)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "v1" in r.stderr
    assert not (tmp_path / "r.txt").exists()


@needs_test_bench
def test_prepare_refuses_missing_files(tmp_path, env):
    inst = read_instances(TEST_DIR)[0]
    assert sh(PREPARE, "v1", "test", tmp_path / "nope.onnx", inst.vnnlib, env=env).returncode != 0
    assert sh(PREPARE, "v1", "test", inst.onnx, tmp_path / "nope.vnnlib", env=env).returncode != 0
    assert sh(PREPARE, "v1", "test", inst.onnx, inst.vnnlib, env=env).returncode == 0


def test_prepare_kills_the_stray_verifier_and_only_it(tmp_path, env):
    inst_args = ("v1", "test", PREPARE, RUN)  # files that exist
    pidfile = Path(env["VERIFRIEND_VNNCOMP_PIDFILE"])
    stray = subprocess.Popen(["bash", "-c", "exec -a verifriend-vnncomp-stray sleep 60"])
    other = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text(f"{stray.pid}\n")
        assert sh(PREPARE, *inst_args, env=env).returncode == 0
        assert stray.wait(timeout=10) != 0  # killed
        assert not pidfile.exists()
        # a pid file naming a process that is no verifier (the number was reused): spared
        pidfile.write_text(f"{other.pid}\n")
        assert sh(PREPARE, *inst_args, env=env).returncode == 0
        assert other.poll() is None
    finally:
        for p in (stray, other):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_run_instance_calls_the_verifier_of_VERIFRIEND(tmp_path, env):
    fake = tmp_path / "fake-verifriend"
    fake.write_text('#!/usr/bin/env bash\necho "$@" > "$(dirname "$0")/args.txt"\nexit 3\n')
    fake.chmod(0o755)
    r = sh(RUN, "v1", "cat", "n.onnx", "p.vnnlib", "res.txt", "42",
           env={**env, "VERIFRIEND": str(fake)})
    assert r.returncode == 3  # the verifier's own exit status
    assert (tmp_path / "args.txt").read_text().split() == [
        "vnncomp", "n.onnx", "p.vnnlib", "--timeout", "42", "--out", "res.txt"]
    assert Path(env["VERIFRIEND_VNNCOMP_PIDFILE"]).read_text().strip().isdigit()
