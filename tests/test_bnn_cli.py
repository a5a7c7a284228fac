"""`verifriend bnn train` and `bnn verify` end to end on the bundled 8x8 digits."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from verifriend.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("bnn") / "m.pt"
    res = runner.invoke(app, ["bnn", "train", "--arch", "32,16", "--dataset", "digits",
                              "--epochs", "2", "--limit", "400", "--test-limit", "60",
                              "--eps", "0.05", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and out.with_suffix(".json").exists()
    assert "test accuracy" in res.output and "cardinality bound" in res.output
    return out


def test_verify_prints_consistent_counts_and_logs_every_image(trained, tmp_path):
    log = tmp_path / "v.jsonl"
    res = runner.invoke(app, ["bnn", "verify", str(trained), "--eps", "0.05", "--limit", "12",
                              "--timeout", "5", "--json", "--log", str(log)])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["images"] == 12 and r["replay_failed"] == 0
    assert r["robust"] + r["attack"] + r["misclassified"] + r["unknown"] == 12
    assert r["verifiable_accuracy"] == pytest.approx(r["robust"] / 12)
    # PGD finds no more than the exact solver: it cannot beat verified robustness
    assert r["pgd_accuracy"] >= r["verifiable_accuracy"]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 12
    res = runner.invoke(app, ["bnn", "verify", str(trained), "--eps", "0.05", "--limit", "12",
                              "--timeout", "5"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert f"verified robust {r['robust']}  attack {r['attack']}" in res.output
    assert "sparsity" in res.output and "%" in res.output and "{" not in res.output


@pytest.mark.parametrize("args, words", [
    (["--eps", "-1"], "--eps must be >= 0"),
    (["--timeout", "0"], "--timeout must be > 0"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--pgd-steps", "-2"], "--pgd-steps must be >= 0"),
    (["--solver", "nonesuch"], "unknown solver backend"),
])
def test_verify_user_errors(trained, args, words):
    res = runner.invoke(app, ["bnn", "verify", str(trained), *args])
    assert res.exit_code == 2 and words in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_verify_missing_model_file(tmp_path):
    res = runner.invoke(app, ["bnn", "verify", str(tmp_path / "nope.pt")])
    assert res.exit_code == 2 and "does not exist" in res.output, res.output
