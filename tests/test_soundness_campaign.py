"""The soundness campaign (benchmarks/soundness_campaign.py).

A 200-network slice runs through the VNN-COMP path with every decided verdict checked by an
exact oracle (MILP / bisection) or by replaying its counterexample in onnxruntime; the checks
are themselves checked against deliberately wrong verifiers; instances saved from wrong
verdicts (tests/data/soundness/) are replayed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from verifriend.app import vnncomp
from verifriend.verify.result import Verdict

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "soundness_campaign.py"
REGRESSIONS = Path(__file__).resolve().parent / "data" / "soundness"


def _load():
    name = "soundness_campaign"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # the campaign's spawned workers import it by this name
        spec.loader.exec_module(mod)
    return sys.modules[name]


sc = _load()


def test_campaign_slice_of_200_networks(tmp_path):
    out = tmp_path / "campaign"
    s = sc.run_campaign(200, workers=2, out=out, seed=0, log=lambda line: None)
    summary = sc.format_summary(s)
    bad = [(r["index"], r.get("net"), r["resolution"], r.get("detail", "")[:160], r.get("saved"))
           for r in s["wrong"] + s["errors"]]
    assert not bad, f"wrong verdicts or campaign failures:\n{bad}\n{summary}"
    assert s["n"] == 200 and s["new"] == 200
    # the oracle decided a healthy share, and both verdicts occurred and were confirmed
    oracle = s["oracle"]
    assert oracle["sat"] + oracle["unsat"] >= 0.8 * 200, summary
    res = s["resolutions"]
    assert res["sat: replayed by onnxruntime"] >= 40, summary
    assert res["unsat: confirmed by MILP"] >= 10, summary
    assert res["unsat: confirmed by bisection"] >= 10, summary
    # near ties were decided on both sides, and every network kind ran
    assert s["by_mode"]["tie-sat"]["sat"] >= 10 and s["by_mode"]["tie-unsat"]["unsat"] >= 10
    assert len(s["by_kind"]) == 8, summary
    # resumable: a truncated last line is dropped, only that index runs again
    log = out / sc.LOG_NAME
    lines = log.read_text().splitlines()
    cut = json.loads(lines[-1])["index"]
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    again = sc.run_campaign(200, workers=1, out=out, seed=0, log=lambda line: None)
    assert again["new"] == 1 and again["n"] == 200
    indices = [json.loads(line)["index"] for line in log.read_text().splitlines()]
    assert sorted(indices) == list(range(200)) and indices[-1] == cut


def _find(answer: str, family: str) -> int:
    for index in range(200):
        inst = sc.make_instance(index, 0, 1.0)
        if inst.net.family == family and sc.oracle_answer(inst)[0] == answer:
            return index
    raise AssertionError(f"no {family} instance with oracle answer {answer} in 200")


@pytest.mark.parametrize("family", ["relu", "s-shaped"])
def test_wrong_verifiers_are_caught(tmp_path, monkeypatch, family):
    """Each kind of wrong verdict is flagged and its files saved."""
    sat_i, unsat_i = _find("sat", family), _find("unsat", family)
    inst = sc.make_instance(unsat_i, 0, 1.0)
    box = inst.prop.boxes[0]
    centre = torch.tensor((box[0] + box[1]) / 2, dtype=torch.float64)
    y = torch.zeros(inst.net.dense()[0][-1][0].shape[0], dtype=torch.float64)

    def fake(verdict):
        monkeypatch.setattr(vnncomp, "run_instance", lambda *a, **k: verdict)

    def run(index):
        return sc.run_one(index, 0, 1.0, str(tmp_path / "work"), str(tmp_path / "wrong"))

    fake(Verdict("unsat", 0.0))
    rec = run(sat_i)
    assert rec["wrong"] and rec["resolution"].startswith("WRONG: unsat but the oracle"), rec
    saved = Path(rec["saved"])
    assert {p.name for p in saved.iterdir()} == {"net.onnx", "spec.vnnlib", "details.json"}
    assert json.loads((saved / "details.json").read_text())["index"] == sat_i

    fake(Verdict("sat", 0.0, counterexample=(centre, y)))
    rec = run(unsat_i)  # the centre of an unsat box reaches no clause
    assert rec["resolution"] == "WRONG: sat counterexample does not replay", rec

    fake(Verdict("sat", 0.0, counterexample=(centre + 10.0, y)))
    rec = run(unsat_i)
    assert rec["resolution"] == "WRONG: sat counterexample outside the input box", rec

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(vnncomp, "run_instance", boom)
    rec = run(unsat_i)
    assert rec["resolution"] == "WRONG: verifier exception" and "boom" in rec["detail"]


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sc.main(["--help"])
    assert e.value.code == 0 and "--timeout-scale" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sc.main(["--networks", "0"])
    (tmp_path / sc.CONFIG_NAME).write_text(json.dumps({"seed": 5, "timeout_scale": 1.0}))
    with pytest.raises(SystemExit, match="another --out"):
        sc.main(["--networks", "1", "--out", str(tmp_path)])


def _regressions():
    return sorted(p for p in REGRESSIONS.glob("*") if (p / "details.json").is_file())


@pytest.mark.parametrize("folder", _regressions(), ids=lambda p: p.name)
def test_saved_wrong_verdicts_replay(folder):
    """Instances the campaign found wrong: the verifier must now run and agree."""
    from verifriend.specs.vnnlib import read_vnnlib

    details = json.loads((folder / "details.json").read_text())
    onnx_path, spec_path = folder / "net.onnx", folder / "spec.vnnlib"
    verdict = vnncomp.run_instance(onnx_path, spec_path, 10.0)
    answer = details["oracle"]["answer"]
    if verdict.status == "unsat":
        assert answer != "sat", details
    if verdict.status == "sat":
        assert answer != "unsat", details
        x = verdict.counterexample[0].numpy().astype(np.float64)
        specs = read_vnnlib(spec_path)
        inside = [s for s in specs if bool(((s.lower.numpy() <= x) & (x <= s.upper.numpy())).all())]
        assert inside
        import onnx

        shape = [d.dim_value for d in onnx.load(str(onnx_path)).graph.input[0].type.tensor_type
                 .shape.dim]
        y = sc.OrtNet(onnx_path.read_bytes(), shape)(x)
        assert any(s.is_violated(torch.tensor(y)) for s in inside)
