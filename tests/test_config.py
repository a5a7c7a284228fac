"""The verifier's options from YAML: `config verifier` prints every option with its help,
`--config` reads the file back, `--set` overrides it, and a bad key or value is one sentence
that names it (exit 2). Settings objects validate themselves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from verifriend.app.config import verifier_config
from verifriend.app.settings import CampaignSettings, EvaluateSettings, VnncompSettings
from verifriend.cli import app
from verifriend.errors import UserError
from verifriend.options import dotted_keys, from_mapping, to_mapping
from verifriend.verify.bab import BabConfig
from verifriend.verify.result import Verdict
from verifriend.verify.verifier import VerifierConfig

runner = CliRunner()
TEST_BENCH = Path(__file__).resolve().parents[2] / "shared" / "vnncomp" / "test"
SAT_ONNX = TEST_BENCH / "onnx" / "test_sat.onnx"
SAT_SPEC = TEST_BENCH / "vnnlib" / "test_prop.vnnlib.gz"


def defaults_text() -> str:
    r = runner.invoke(app, ["config", "verifier"])
    assert r.exit_code == 0, r.output
    return r.output


def assert_one_sentence(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def recorded(monkeypatch):
    """The options `vnncomp` hands the verifier (run_instance replaced by a recorder)."""
    seen = []

    def fake(model, spec, timeout, *, config=None, **kw):
        seen.append(config)
        return Verdict("unsat", 0.01)

    monkeypatch.setattr("verifriend.app.vnncomp.run_instance", fake)
    return seen


def vnncomp(tmp_path: Path, *args: str):
    return runner.invoke(app, ["vnncomp", "n.onnx", "p.vnnlib", "--out",
                               str(tmp_path / "r.txt"), *args])


# --- the defaults as YAML ------------------------------------------------------------------------

def test_config_verifier_parses_and_round_trips_to_the_defaults(tmp_path):
    text = defaults_text()
    data = yaml.safe_load(text)
    assert data == to_mapping(VerifierConfig())
    assert from_mapping(VerifierConfig, data) == VerifierConfig()
    path = tmp_path / "v.yaml"
    path.write_text(text)
    assert verifier_config(path) == VerifierConfig()


def test_every_option_has_help_and_a_comment():
    text = defaults_text()
    for cls in (VerifierConfig, BabConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            first = f.metadata["help"].split()[:4]
            assert "# " + " ".join(first) in text, f.name
    # the nesting of the file mirrors the dataclasses': a bab section
    keys = dotted_keys(VerifierConfig)
    assert "bab.branching" in keys and "bab.lr_beta" in keys and "milp_share" in keys
    assert "\nbab:\n  # " in text


# --- bad keys and values -------------------------------------------------------------------------

def test_a_typo_in_a_key_is_one_sentence_naming_it(tmp_path, recorded):
    bad = tmp_path / "v.yaml"
    bad.write_text("attack_share: 0.2\nbab:\n  batchsize: 64\n")
    line = assert_one_sentence(vnncomp(tmp_path, "--config", str(bad)),
                               str(bad), "unknown verifier option 'bab.batchsize'")
    assert "did you mean 'bab.batch'?" in line
    bad.write_text("bab_batch: 64\n")  # a section's option at the top level
    assert_one_sentence(vnncomp(tmp_path, "--config", str(bad)), "'bab_batch'", "'bab.batch'")
    bad.write_text("colour: blue\n")
    line = assert_one_sentence(vnncomp(tmp_path, "--config", str(bad)), "'colour'")
    assert "did you mean" not in line
    assert_one_sentence(vnncomp(tmp_path, "--set", "bab.branchng=fsb"),
                        "--set", "'bab.branchng'", "'bab.branching'")
    assert not recorded  # nothing ran


@pytest.mark.parametrize("text, words", [
    ("bab:\n  batch: many\n", ["'bab.batch'", "must be an integer", "'many'"]),
    ("bab:\n  batch: 0\n", ["'bab.batch'", ">= 1"]),
    ("alpha_iterations: 2.5\n", ["'alpha_iterations'", "must be an integer"]),
    ("attack_share: 1.5\n", ["'attack_share'", "in [0, 1]"]),
    ("alpha_intermediate: maybe\n", ["'alpha_intermediate'", "true or false"]),
    ("bab:\n  branching: random\n", ["'bab.branching'", "babsr, fsb"]),
    ("bab: 3\n", ["'bab'", "mapping"]),
    ("- attack_share\n", ["mapping"]),
    ("bab: [unclosed\n", ["not valid YAML", "line"]),
])
def test_a_bad_value_is_one_sentence_and_exit_2(tmp_path, recorded, text, words):
    bad = tmp_path / "v.yaml"
    bad.write_text(text)
    assert_one_sentence(vnncomp(tmp_path, "--config", str(bad)), str(bad), *words)
    assert not recorded


def test_a_missing_config_file_and_a_bad_set(tmp_path, recorded):
    assert_one_sentence(vnncomp(tmp_path, "--config", str(tmp_path / "none.yaml")),
                        "none.yaml", "cannot read")
    assert_one_sentence(vnncomp(tmp_path, "--set", "bab.batch"), "--set", "KEY=VALUE")
    assert_one_sentence(vnncomp(tmp_path, "--set", "milp_share=-1"), "'milp_share'")


def test_a_bad_config_leaves_no_stale_vnncomp_result(tmp_path, recorded):
    out = tmp_path / "r.txt"
    out.write_text("unsat\n")  # the previous instance's verdict
    bad = tmp_path / "v.yaml"
    bad.write_text("bab: {batchsize: 1}\n")
    assert_one_sentence(vnncomp(tmp_path, "--config", str(bad)), "bab.batchsize")
    assert not out.exists()


# --- the file and the flags reach the verifier ---------------------------------------------------

def test_flags_override_the_file(tmp_path, recorded):
    path = tmp_path / "v.yaml"
    path.write_text(defaults_text().replace("branching: babsr", "branching: fsb")
                    .replace("attack_share: 0.1", "attack_share: 0.2"))
    r = vnncomp(tmp_path, "--config", str(path))
    assert r.exit_code == 0, r.output
    assert recorded[-1].bab.branching == "fsb" and recorded[-1].attack_share == 0.2
    r = vnncomp(tmp_path, "--config", str(path), "--set", "bab.branching=babsr",
                "--set", "bab.batch=32", "--set", "exact_leaf_time=1e-1")
    assert r.exit_code == 0, r.output
    got = recorded[-1]
    assert got.bab.branching == "babsr" and got.bab.batch == 32 and got.exact_leaf_time == 0.1
    assert got.attack_share == 0.2  # what the flags do not name comes from the file
    assert got == dataclasses.replace(VerifierConfig(attack_share=0.2, exact_leaf_time=0.1),
                                      bab=BabConfig(batch=32))
    r = vnncomp(tmp_path)
    assert r.exit_code == 0 and recorded[-1] is None  # no options given: the defaults


def test_verify_passes_the_options_to_every_property(tmp_path, monkeypatch):
    from verifriend.app import campaign
    from verifriend.app.artifacts import save_model
    from verifriend.data.datasets import Dataset
    from verifriend.models import build_model

    shape = (1, 28, 28)
    x = torch.rand(10, *shape)
    y = torch.arange(10)
    data = Dataset("mnist-embedded", "tiny", x, y, x.clone(), y.clone(),
                   [str(i) for i in range(10)], (0.1307,), (0.3081,), "test")
    monkeypatch.setattr("verifriend.data.load_dataset", lambda name, data_dir=None: data)
    model = build_model("fc_1x20", shape, 10, (0.1307,), (0.3081,))
    last = [m for m in model if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # class 0 for every input: image 0 goes to the verifier
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = 1.0
    save_model(model, tmp_path / "m.pt", arch="fc_1x20", input_shape=shape, num_classes=10,
               dataset="mnist-embedded", mean=(0.1307,), std=(0.3081,))
    seen = []

    def fake(graph, specs, input_shape, *, timeout, config=None):
        seen.append(config)
        return Verdict("unsat", 0.01)

    monkeypatch.setattr(campaign, "verify_spec", fake)
    path = tmp_path / "v.yaml"
    path.write_text("bab:\n  iterations: 3\n")
    r = runner.invoke(app, ["verify", "--model", str(tmp_path / "m.pt"), "--eps", "0.01",
                            "--timeout", "1", "--per-class", "1", "--config", str(path),
                            "--set", "alpha_iterations=5", "--json"])
    assert r.exit_code == 0, r.output
    assert seen == [VerifierConfig(alpha_iterations=5, bab=BabConfig(iterations=3))]


@pytest.mark.skipif(not SAT_ONNX.is_file() or not SAT_SPEC.is_file(),
                    reason="the shared VNN-COMP test benchmark is not here")
def test_the_default_file_gives_the_same_verdict(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(defaults_text())
    verdicts = []
    for extra in ([], ["--config", str(path)]):
        out = tmp_path / f"r{len(verdicts)}.txt"
        r = runner.invoke(app, ["vnncomp", str(SAT_ONNX), str(SAT_SPEC), "--timeout", "30",
                                "--out", str(out), *extra])
        assert r.exit_code == 0, r.output
        verdicts.append(out.read_text().splitlines()[0])
    assert verdicts[0] == verdicts[1] == "sat"


# --- settings validate themselves ----------------------------------------------------------------

def test_options_dataclasses_refuse_bad_values():
    with pytest.raises(UserError, match=r"attack_share must be in \[0, 1\], got 2"):
        VerifierConfig(attack_share=2)
    with pytest.raises(UserError, match="batch must be an integer >= 1, got 0"):
        BabConfig(batch=0)
    with pytest.raises(UserError, match="branching must be one of babsr, fsb"):
        BabConfig(branching="nope")
    with pytest.raises(UserError, match="lr_beta must be > 0"):
        BabConfig(lr_beta=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        VerifierConfig().attack_share = 0.5  # type: ignore[misc]


def test_job_settings_validate_once_on_construction():
    with pytest.raises(UserError, match=r"--eps must be in \[0, 1\]"):
        CampaignSettings(Path("m.pt"), 2.0, 1.0)
    with pytest.raises(UserError, match="--timeout must be a positive number of seconds"):
        CampaignSettings(Path("m.pt"), 0.1, 0.0)
    with pytest.raises(UserError, match="--per-class must be at least 1"):
        EvaluateSettings(Path("m.pt"), (0.1,), per_class=0)
    with pytest.raises(UserError, match="the timeout must be a positive number"):
        VnncompSettings(Path("n.onnx"), Path("p.vnnlib"), float("nan"))
    s = CampaignSettings(Path("runs/m.pt"), 0.05, 10.0)
    assert s.results_file == Path("runs/m.verify.eps0.05.jsonl")


def test_attack_restarts_reach_the_first_attack(monkeypatch):
    from verifriend.bounds.frontends.torch import from_module
    from verifriend.specs.spec import Spec
    from verifriend.verify import attack, verifier

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    graph = from_module(net, (4,))
    spec = Spec.linf_robustness(torch.zeros(4), 0, 5.0, 3, lo=-10.0, hi=10.0)  # not provable
    seen = []

    def fake_falsify(*a, restarts=64, **k):
        seen.append(restarts)

    monkeypatch.setattr(attack, "falsify", fake_falsify)
    verifier.verify_spec(graph, [spec], (4,), timeout=2.0,
                         config=VerifierConfig(attack_restarts=7, milp_unstable=0))
    assert seen and seen[0] == 7
