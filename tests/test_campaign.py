"""Verification campaigns: real verdicts per property, summaries that match the file, and a
resume that neither redoes, duplicates nor loses a property (interrupt, truncated line, SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from verifriend.app import campaign
from verifriend.app.campaign import read_results, run_campaign, summarize
from verifriend.cli import app
from verifriend.data import load_dataset, select_per_class
from verifriend.errors import UserError
from verifriend.verify.result import STATUSES, Verdict

runner = CliRunner()


@pytest.fixture(scope="module")
def y_test():
    return load_dataset("mnist-embedded").y_test


class FakeVerify:
    """Counts calls; raises KeyboardInterrupt on call number ``interrupt_at`` (1-based)."""

    def __init__(self, interrupt_at: int | None = None):
        self.calls = 0
        self.interrupt_at = interrupt_at

    def __call__(self, graph, specs, input_shape, *, timeout, config=None, progress=None):
        if self.interrupt_at is not None and self.calls + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        return Verdict("unsat", 0.01, "bab", 3)


def file_lines(path):
    header, lines, truncated = read_results(path)
    assert header is not None and not truncated
    return lines


def test_end_to_end_real_verifier(ckpt, tmp_path, y_test):
    out = tmp_path / "r.jsonl"
    s = run_campaign(ckpt, eps=0.02, timeout=5, per_class=1, out_jsonl=out, progress=False)
    lines = file_lines(out)
    expected = select_per_class(y_test, 1).tolist()
    assert [ln["index"] for ln in lines] == expected
    assert s.total == len(expected) == 10 and s.new == 10 and s.resumed == 0 and s.complete
    assert s.summary == summarize(lines)
    assert all(ln["status"] in (*STATUSES, "misclassified") for ln in lines)
    assert all(ln["label"] == int(y_test[ln["index"]]) for ln in lines)
    verified = [ln for ln in lines if ln["status"] != "misclassified"]
    assert verified, "the test model should classify some images correctly"
    assert all(0 <= ln["stable_pct"] <= 100 and ln["time_s"] >= 0 for ln in verified)
    sm = s.summary
    assert sm["n"] == 10
    total = sm["unsat_pct"] + sm["sat_pct"] + sm["timeout_pct"] + sm["misclassified_pct"]
    assert total == pytest.approx(100.0)
    assert sm["unsat_pct"] == pytest.approx(10.0 * sum(ln["status"] == "unsat" for ln in lines))
    assert sm["stable_pct"] == pytest.approx(sum(ln["stable_pct"] for ln in verified) / len(verified))
    # a finished campaign re-run does nothing and leaves the file as it was
    before = out.read_bytes()
    again = run_campaign(ckpt, eps=0.02, timeout=5, per_class=1, out_jsonl=out, progress=False,
                         verify=FakeVerify(interrupt_at=1))
    assert again.new == 0 and again.resumed == 10 and again.summary == s.summary
    assert out.read_bytes() == before


def test_summarize_by_hand():
    lines = [
        {"format": "verifriend-campaign"},  # headers are ignored
        {"index": 0, "status": "unsat", "time_s": 1.0, "domains": 0, "stable_pct": 90.0},
        {"index": 1, "status": "timeout", "time_s": 5.0, "domains": 10, "stable_pct": 50.0},
        {"index": 2, "status": "sat", "time_s": 0.0, "domains": 0, "stable_pct": 70.0},
        {"index": 3, "status": "misclassified", "time_s": 0.0, "domains": 0, "stable_pct": None},
    ]
    s = summarize(lines)
    assert s["n"] == 4 and s["n_verified"] == 3
    assert (s["unsat_pct"], s["sat_pct"], s["timeout_pct"], s["misclassified_pct"]) == (25, 25, 25, 25)
    assert s["stable_pct"] == pytest.approx(70.0)
    assert s["mean_time_s"] == pytest.approx(2.0)
    assert s["mean_time_unsat_timeout_s"] == pytest.approx(3.0)
    assert s["mean_domains"] == pytest.approx(10 / 3)
    assert summarize([])["n"] == 0 and summarize([])["stable_pct"] is None


def test_resume_after_interrupt_and_truncated_line(ckpt, tmp_path, y_test):
    out = tmp_path / "r.jsonl"
    kw = {"eps": 0.02, "timeout": 1, "per_class": 3, "out_jsonl": out, "progress": False}
    expected = select_per_class(y_test, 3).tolist()

    first = FakeVerify(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(ckpt, verify=first, **kw)
    assert first.calls == 3
    partial = file_lines(out)
    assert sum(ln["status"] != "misclassified" for ln in partial) == 3
    assert [ln["index"] for ln in partial] == expected[: len(partial)]

    second = FakeVerify()
    s = run_campaign(ckpt, verify=second, **kw)
    lines = file_lines(out)
    indices = [ln["index"] for ln in lines]
    n_verified = sum(ln["status"] != "misclassified" for ln in lines)
    assert indices == expected  # none missing, none twice, in selection order
    assert first.calls + second.calls == n_verified  # no property verified twice
    assert s.resumed == len(partial) and s.new == len(expected) - len(partial)
    assert s.summary == summarize(lines)

    # a kill in the middle of a write leaves part of the last line: dropped, property redone
    complete = out.read_text()
    body = complete.rstrip("\n")
    last = body.rsplit("\n", 1)[1]
    out.write_text(body[: len(body) - len(last) // 2])
    _, kept, truncated = read_results(out)
    assert truncated and [ln["index"] for ln in kept] == expected[:-1]
    third = FakeVerify()
    s = run_campaign(ckpt, verify=third, **kw)
    assert third.calls == (0 if json.loads(last)["status"] == "misclassified" else 1)
    assert s.new == 1 and out.read_text() == complete

    # the whole last line written but its newline not yet: also treated as cut short
    out.write_text(complete.rstrip("\n"))
    s = run_campaign(ckpt, verify=FakeVerify(), **kw)
    assert s.new == 1 and out.read_text() == complete


def test_truncated_header_and_other_settings(ckpt, tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"format": "verifriend-camp')  # killed while writing the header
    s = run_campaign(ckpt, eps=0.02, timeout=1, per_class=1, out_jsonl=out, progress=False,
                     verify=FakeVerify())
    assert s.new == 10 and len(file_lines(out)) == 10
    for kw in ({"eps": 0.03}, {"timeout": 2}, {"per_class": 2}, {"seed": 1}):
        args = {"eps": 0.02, "timeout": 1, "per_class": 1, "seed": 0, **kw}
        with pytest.raises(UserError, match="other settings"):
            run_campaign(ckpt, out_jsonl=out, progress=False, verify=FakeVerify(), **args)
    damaged = tmp_path / "damaged.jsonl"
    lines = out.read_text().split("\n")
    damaged.write_text("\n".join([lines[0], "not json", *lines[1:]]))
    with pytest.raises(UserError, match="damaged"):
        run_campaign(ckpt, eps=0.02, timeout=1, per_class=1, out_jsonl=damaged, progress=False)


# --- the command line ----------------------------------------------------------------------------

def assert_user_error(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    msg = result.output.strip()
    assert len(msg.splitlines()) == 1, msg  # one sentence on one line
    for w in words:
        assert w.lower() in msg.lower(), msg
    return msg


def test_cli_user_errors(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "verify_spec", FakeVerify())
    m = str(ckpt)
    base = ["verify", "--model", m, "--timeout", "1"]
    assert_user_error(runner.invoke(app, ["verify", "--model", str(tmp_path / "missing.pt"),
                                          "--eps", "0.1", "--timeout", "1"]), "missing.pt")
    assert_user_error(runner.invoke(app, [*base, "--eps", "-0.1"]), "eps")
    assert_user_error(runner.invoke(app, [*base, "--eps", "2"]), "eps")
    assert_user_error(runner.invoke(app, ["verify", "--model", m, "--eps", "0.1", "--timeout", "0"]),
                      "timeout")
    assert_user_error(runner.invoke(app, [*base, "--eps", "0.1", "--per-class", "0"]), "per-class")
    out = tmp_path / "r.jsonl"
    r = runner.invoke(app, [*base, "--eps", "0.02", "--per-class", "1", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert_user_error(runner.invoke(app, [*base, "--eps", "0.03", "--per-class", "1", "--out", str(out)]),
                      "other settings")
    r = runner.invoke(app, ["verify", "--help"])
    assert r.exit_code == 0 and "Example: verifriend verify" in r.output


def test_cli_table_json_and_default_out(ckpt, monkeypatch):
    monkeypatch.setattr(campaign, "verify_spec", FakeVerify())
    default = ckpt.with_name(f"{ckpt.stem}.verify.eps0.01.jsonl")
    default.unlink(missing_ok=True)
    r = runner.invoke(app, ["verify", "--model", str(ckpt), "--eps", "0.01", "--timeout", "1",
                            "--per-class", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["out_jsonl"] == str(default) and default.exists()
    assert res["complete"] and res["new"] == 10 and res["summary"] == summarize(file_lines(default))
    r = runner.invoke(app, ["verify", "--model", str(ckpt), "--eps", "0.01", "--timeout", "1",
                            "--per-class", "1"])
    assert r.exit_code == 0, r.output
    assert "UNSAT" in r.output and "10 resumed, 0 new" in r.output
    default.unlink()


# The CLI with the real verifier; with VF_TEST_KILL_AFTER=N in the environment the process
# SIGKILLs itself when verify_spec is called once N property lines are in the --out file, i.e.
# in the middle of deciding the next correctly classified property (misclassified images are
# written without a call, so the count is read from the file, not from the calls).
KILL_VAR = "VF_TEST_KILL_AFTER"
_CLI = """
import os, signal, sys
from verifriend.app import campaign
kill_after = os.environ.get("VF_TEST_KILL_AFTER")
out = sys.argv[sys.argv.index("--out") + 1]
real = campaign.verify_spec
def killing(*a, **k):
    if kill_after is not None:
        with open(out) as f:
            written = f.read().count("\\n") - 1  # less the header
        if written >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
campaign.verify_spec = killing
from verifriend.cli import app
sys.argv = ["verifriend", *sys.argv[1:]]
app()
"""


def _run(cmd, env):
    try:
        return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{cmd[3:]} did not finish within 600 s")


def test_sigkill_and_restart(ckpt, tmp_path, y_test):
    n_kill = 2  # property lines written before the kill (at least; see below)
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-c", _CLI, "verify", "--model", str(ckpt), "--eps", "0.02",
           "--timeout", "5", "--per-class", "2", "--out", str(out), "--json"]
    env = {k: v for k, v in os.environ.items() if k != KILL_VAR}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = _run(cmd, {**env, KILL_VAR: str(n_kill)})
    assert r.returncode == -signal.SIGKILL, f"the campaign was not killed: {r.stderr}"
    header, before, truncated = read_results(out)
    assert header is not None and not truncated  # killed between two writes
    expected = select_per_class(y_test, 2).tolist()
    assert [ln["index"] for ln in before] == expected[: len(before)]

    r = _run(cmd, env)  # the same command, not killed this time
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    lines = file_lines(out)
    assert [ln["index"] for ln in lines] == expected  # every property exactly once
    # the kill came in the first verify_spec call with n_kill lines written: after n_kill
    # lines and any misclassified ones right behind them, before the next verified property
    killed_at = next(k for k in range(n_kill, len(lines)) if lines[k]["status"] != "misclassified")
    assert len(before) == killed_at < len(expected)
    assert lines[: len(before)] == before  # the lines written before the kill were kept
    assert res["resumed"] == len(before) and res["new"] == len(expected) - len(before)
    assert res["summary"] == summarize(lines)
