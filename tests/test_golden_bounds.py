"""`verifriend bounds` gives the same figures as before the operator refactor (issue 20).

`tests/data/golden/bounds_mnistfc_verivital.json` holds, for every shared mnistfc and
verivital instance, the IBP, CROWN and alpha-CROWN (5 iterations) bounds of each output
constraint as `verifriend bounds` printed them at commit 8248132, one intra-op thread. The
engine may be reorganized freely; these numbers may not move (to 1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from verifriend.cli import app

VNNCOMP = Path(__file__).resolve().parents[2] / "shared" / "vnncomp"
GOLDEN = json.loads((Path(__file__).parent / "data" / "golden" /
                     "bounds_mnistfc_verivital.json").read_text())
KEYS = sorted(GOLDEN)
runner = CliRunner()
needs_vnncomp = pytest.mark.skipif(not VNNCOMP.is_dir(), reason="../shared/vnncomp not present")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bounds(key: str, method: str) -> list[list[float]]:
    bench, onnx_dir, onnx_name, spec_dir, spec_name = key.split("/")
    args = ["bounds", str(VNNCOMP / bench / onnx_dir / onnx_name),
            str(VNNCOMP / bench / spec_dir / spec_name), "--method", method, "--json"]
    if method == "alpha":
        args += ["--iterations", "5"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return [[c["clause"], c["lower"], c["upper"]] for c in json.loads(res.output)["constraints"]]


def _close(got: list[list[float]], want: list[list[float]]) -> bool:
    return len(got) == len(want) and all(
        g[0] == w[0] and all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(g[1:], w[1:]))
        for g, w in zip(got, want))


def test_golden_file_covers_both_benchmarks():
    assert len(KEYS) == 90
    assert {k.split("/")[0] for k in KEYS} == {"mnistfc", "verivital"}


@needs_vnncomp
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_interval_and_crown_bounds_unchanged(method):
    moved = [k for k in KEYS if not _close(_bounds(k, method), GOLDEN[k][method])]
    assert not moved, f"{method} bounds moved on {len(moved)} instances, e.g. {moved[:3]}"


@needs_vnncomp
@pytest.mark.usefixtures("one_thread")
def test_alpha_crown_bounds_unchanged():
    # every third instance: alpha-CROWN is the slow one on a CPU
    keys = KEYS[::3]
    moved = [k for k in keys if not _close(_bounds(k, "alpha"), GOLDEN[k]["alpha"])]
    assert not moved, f"alpha bounds moved on {len(moved)} instances, e.g. {moved[:3]}"
