"""benchmarks/bnn_vs_minisatcs.py: instructions without sources, the JSON's shape (a fake
MiniSatCS standing in; the real one when $MINISATCS_SRC is set)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from verifriend.app import bnn_bench
from verifriend.app.bnn_bench import Suite
from verifriend.bnn.integer import random_int_bnn

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bnn_vs_minisatcs.py"


def _module():
    spec = importlib.util.spec_from_file_location("bnn_vs_minisatcs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _suite(seed: int = 1, images: int = 12, eps: float = 0.34) -> Suite:
    rng = np.random.default_rng(seed)
    net = random_int_bnn(rng, [6, 10, 8, 3], levels=3)
    x = rng.random((images, 6))
    return Suite(f"random-{seed}", net, x, net.predict(net.quantize(x)), eps)


def test_without_sources_prints_instructions_and_exits_0():
    env = {k: v for k, v in os.environ.items() if k != "MINISATCS_SRC"}
    r = subprocess.run([sys.executable, str(SCRIPT), "--json"], check=False, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "git clone https://github.com/jia-kai/minisatcs" in r.stdout
    assert "MINISATCS_SRC" in r.stdout


class _FakeMiniSatCS:
    """Stands in for the compiled solver: the native solver, fresh per query, with units."""

    flatten = staticmethod(lambda formula: formula)

    def __init__(self, _lib) -> None:
        pass

    def run(self, num_vars, formula, units, timeout):
        out = _module().native_fresh(formula, units, timeout)
        if out["status"] == "sat":
            out["model"] = list(out["model"])
        return out


def _check_shape(out: dict, names: list[str], queries: int) -> None:
    assert list(out) == ["sets"]
    assert [s["name"] for s in out["sets"]] == names
    for s in out["sets"]:
        for key, kind in (("name", str), ("queries", int), ("native_s", float),
                          ("minisatcs_s", float), ("native_unknown", int),
                          ("minisatcs_unknown", int), ("agree", bool)):
            assert isinstance(s[key], kind), key
        assert 0 < s["queries"] <= queries
        assert s["agree"] is True
        assert s["native_unknown"] == s["minisatcs_unknown"] == 0


def _patch_nets(monkeypatch):
    monkeypatch.setattr(bnn_bench, "prepare_nets",
                        lambda names, *a, **k: [(n, Path(f"{n}.pt")) for n in names])
    monkeypatch.setattr(bnn_bench, "suites_for",
                        lambda pairs, radii, images, **k: [_suite(eps=radii[0] + 0.24)])


def test_json_shape_with_a_fake_solver(monkeypatch, tmp_path, capsys):
    mod = _module()
    monkeypatch.setenv("MINISATCS_SRC", str(tmp_path))
    monkeypatch.setattr(mod, "build_minisatcs", lambda src, out, log=print: out / "lib.so")
    monkeypatch.setattr(mod, "MiniSatCS", _FakeMiniSatCS)
    _patch_nets(monkeypatch)
    assert mod.main(["--json", "--sets", "digits-0.05,digits-0.1", "--queries", "5",
                     "--timeout", "5"]) == 0
    _check_shape(json.loads(capsys.readouterr().out), ["digits-0.05", "digits-0.1"], 5)


@pytest.mark.skipif(not os.environ.get("MINISATCS_SRC"), reason="MINISATCS_SRC not set")
def test_json_shape_with_the_real_sources(monkeypatch, capsys):
    mod = _module()
    _patch_nets(monkeypatch)
    assert mod.main(["--json", "--sets", "mnist-quick", "--queries", "8"]) == 0
    _check_shape(json.loads(capsys.readouterr().out), ["mnist-quick"], 8)
