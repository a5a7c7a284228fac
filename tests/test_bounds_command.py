"""`verifriend bounds`: the stable JSON format, and bounds that contain onnxruntime's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from verifriend.cli import app
from verifriend.specs.vnnlib import read_vnnlib

VNNCOMP = Path(__file__).resolve().parents[2] / "shared" / "vnncomp"
CASES = [
    ("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/vnnlib/prop_2.vnnlib.gz"),
    ("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/vnnlib/prop_6.vnnlib.gz"),
    ("mnistfc/onnx/mnist-net_256x2.onnx", "mnistfc/vnnlib/prop_0_0.03.vnnlib.gz"),
]
needs_vnncomp = pytest.mark.skipif(not VNNCOMP.is_dir(), reason="../shared/vnncomp not present")
runner = CliRunner()


def _onnx_outputs(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    outs = [sess.run(None, {inp.name: row.reshape(shape).astype(np.float32)})[0].ravel()
            for row in x]
    return np.stack(outs)


# alpha-CROWN (slow on CPU) on the mnistfc case only, to keep the suite short
PARAMS = [(o, s, m) for o, s in CASES for m in ("ibp", "crown")] + [(*CASES[2], "alpha")]


@needs_vnncomp
@pytest.mark.parametrize("onnx_rel, spec_rel, method", PARAMS)
def test_bounds_contain_sampled_constraint_values(onnx_rel, spec_rel, method):
    onnx_path, spec_path = VNNCOMP / onnx_rel, VNNCOMP / spec_rel
    if not spec_path.exists():
        pytest.skip(f"{spec_rel} not present")
    r = runner.invoke(app, ["bounds", str(onnx_path), str(spec_path), "--method", method, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["method"] == method and out["time_s"] >= 0
    specs = read_vnnlib(spec_path)
    cons = specs[0].constraints()
    assert [c["clause"] for c in out["constraints"]] == [j for j, _, _ in cons]
    rng = np.random.default_rng(0)
    for spec in specs:
        lo, hi = spec.lower.numpy(), spec.upper.numpy()
        x = lo + rng.random((300, lo.size)) * (hi - lo)
        x[:2] = lo, hi
        y = _onnx_outputs(onnx_path, x).astype(np.float64)
        for c, (_, a, b) in zip(out["constraints"], spec.constraints()):
            v = y @ a.numpy() - b
            tol = 1e-5 * max(1.0, float(np.abs(v).max()))
            assert c["lower"] - tol <= v.min() and v.max() <= c["upper"] + tol
            assert c["lower"] <= c["upper"]


def test_bounds_user_errors(tmp_path):
    r = runner.invoke(app, ["bounds", str(tmp_path / "x.onnx"), str(tmp_path / "y.vnnlib")])
    assert r.exit_code == 2 and "x.onnx" in r.output
    r = runner.invoke(app, ["bounds", "a.onnx", "b.vnnlib", "--method", "deeppoly"])
    assert r.exit_code == 2 and "deeppoly" in r.output
