"""Outputs that cannot lose data: a bad output path is one sentence and exit 2 before any work,
with nothing left behind; writes are atomic with ordinary modes; a failed job removes the
folders it made; a failed `vnncomp` leaves no result file; `verify` never overwrites a file
it did not write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from verifriend.app.artifacts import save_model
from verifriend.app.outputs import (
    check_out_dir,
    check_out_file,
    file_mode,
    save_torch_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from verifriend.cli import app
from verifriend.data.datasets import Dataset
from verifriend.errors import UserError
from verifriend.models import build_model
from verifriend.train import TrainConfig
from verifriend.verify.result import Verdict

runner = CliRunner()
# root may write almost anywhere, but not create files in /proc
UNWRITABLE = Path("/proc/verifriend-nope/out")
MNIST = (1, 28, 28)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def forbid(monkeypatch, *targets: str) -> None:
    """Replace each ``module:attr`` with a function that fails the test when called."""
    for target in targets:
        module, attr = target.split(":")

        def called(*a, _t=target, **k):
            raise AssertionError(f"{_t} ran: work started before the output path was checked")

        monkeypatch.setattr(f"{module}.{attr}", called)


def assert_refused(result, path: Path | str):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # one sentence on one line
    assert str(path) in lines[0], lines[0]


def tiny_data(n: int = 10) -> Dataset:
    """A 10-image stand-in for mnist-embedded (one image per class), loaded in no time."""
    x = torch.rand(n, *MNIST)
    y = torch.arange(n) % 10
    return Dataset("mnist-embedded", "tiny", x, y, x.clone(), y.clone(),
                   [str(i) for i in range(10)], (0.1307,), (0.3081,), "test")


def make_checkpoint(path: Path, always: int | None = None) -> Path:
    """An untrained fc_1x20 checkpoint for mnist-embedded; with ``always``, a net that
    predicts that class for every input."""
    model = build_model("fc_1x20", MNIST, 10, (0.1307,), (0.3081,))
    if always is not None:
        last = [m for m in model if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
            last.bias[always] = 1.0
    save_model(model, path, arch="fc_1x20", input_shape=MNIST, num_classes=10,
               dataset="mnist-embedded", mean=(0.1307,), std=(0.3081,))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "m.pt")


RECIPE = """
dataset: mnist-embedded
arch: fc_1x20
train: {epochs: 1, limit: 64}
methods:
  natural: {method: natural}
evaluate: {eps: [0.02], per_class: 1, timeout: 1, pgd_steps: 1}
"""


# --- every command: a bad output path is refused before any work --------------------------------
#
# Each case: (command, how the bad path is made, argv builder, entry points that must not run).
# Kinds: "file" - a regular file where a directory is expected; "below-file" - a path whose
# parent is a regular file; "dir" - a directory where a file is expected; "inner-dir" - the
# output directory holds a directory where the job writes a file; "unwritable" - under /proc.

DIR_COMMANDS = {
    "train": (lambda p, t: ["train", "--arch", "fc_1x20", "--epochs", "1", "--out", str(p)],
              ["verifriend.data:load_dataset", "verifriend.app.train:train_with"],
              "model.pt"),
    "demo": (lambda p, t: ["demo", "--epochs", "1", "--out", str(p)],
             ["verifriend.app.demo:load_dataset", "verifriend.app.demo:train_and_save"], "results.json"),
    "experiment": (lambda p, t: ["experiment", str(t / "r.yaml"), "--out", str(p)],
                   ["verifriend.data:load_dataset", "verifriend.app.train:train_and_save"],
                   "table.md"),
}

FILE_COMMANDS = {
    "export": (lambda p, t: ["export", str(t / "missing.pt"), str(p)],
               ["verifriend.app.artifacts:load_model", "verifriend.app.artifacts:export_onnx"]),
    "verify": (None, ["verifriend.data:load_dataset", "verifriend.app.campaign:verify_spec"]),
    "vnncomp": (lambda p, t: ["vnncomp", str(t / "n.onnx"), str(t / "p.vnnlib"), "--out", str(p)],
                ["verifriend.app.vnncomp:run_instance"]),
    "bnn-train": (lambda p, t: ["bnn", "train", "--arch", "32,16", "--dataset", "digits",
                                "--epochs", "1", "--out", str(p)],
                  ["verifriend.app.bnn_train:load_data", "verifriend.app.bnn_train:train_bnn"]),
    "bnn-verify-log": (lambda p, t: ["bnn", "verify", str(t / "missing.pt"), "--log", str(p)],
                       ["verifriend.app.bnn_verify:load_with_test_set"]),
    "bnn-bench-out": (lambda p, t: ["bnn", "bench", str(t / "missing.pt"), "--out", str(p)],
                      ["verifriend.app.bnn_bench:run_bench"]),
}


def _bad_path(kind: str, tmp: Path, inner: str = "") -> Path:
    if kind == "unwritable":
        return UNWRITABLE
    if kind == "file":
        (tmp / "taken").write_text("not a folder\n")
        return tmp / "taken"
    if kind == "below-file":
        (tmp / "taken").write_text("not a folder\n")
        return tmp / "taken" / "out"
    if kind == "dir":
        (tmp / "adir.out").mkdir()
        return tmp / "adir.out"
    assert kind == "inner-dir"
    (tmp / "run" / inner).mkdir(parents=True)
    return tmp / "run" / inner


@pytest.mark.parametrize("kind", ["file", "below-file", "inner-dir", "unwritable"])
@pytest.mark.parametrize("command", list(DIR_COMMANDS))
def test_bad_output_directory_is_refused_before_work(command, kind, tmp_path, monkeypatch):
    argv, targets, inner = DIR_COMMANDS[command]
    (tmp_path / "r.yaml").write_text(RECIPE)
    bad = _bad_path(kind, tmp_path, inner)
    out = bad.parent if kind == "inner-dir" else bad
    forbid(monkeypatch, *targets)
    before = snapshot(tmp_path)
    assert_refused(runner.invoke(app, argv(out, tmp_path)), bad)
    assert snapshot(tmp_path) == before
    assert not UNWRITABLE.parent.exists()


def test_experiment_method_folder_that_is_a_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "r.yaml").write_text(RECIPE)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "natural").write_text("a file where the method's folder goes\n")
    forbid(monkeypatch, *DIR_COMMANDS["experiment"][1])
    before = snapshot(tmp_path)
    r = runner.invoke(app, ["experiment", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")])
    assert_refused(r, tmp_path / "run" / "natural")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["dir", "below-file", "unwritable"])
@pytest.mark.parametrize("command", list(FILE_COMMANDS))
def test_bad_output_file_is_refused_before_work(command, kind, tmp_path, monkeypatch, ckpt):
    argv, targets = FILE_COMMANDS[command]
    bad = _bad_path(kind, tmp_path)
    if command == "verify":
        args = ["verify", "--model", str(ckpt), "--eps", "0.1", "--timeout", "1",
                "--out", str(bad)]
    else:
        args = argv(bad, tmp_path)
    forbid(monkeypatch, *targets)
    before = snapshot(tmp_path)
    model_dir = snapshot(ckpt.parent)
    assert_refused(runner.invoke(app, args), bad)
    assert snapshot(tmp_path) == before and snapshot(ckpt.parent) == model_dir
    assert not UNWRITABLE.parent.exists()


def test_bnn_train_summary_beside_the_model_must_be_writable(tmp_path, monkeypatch):
    (tmp_path / "m.json").mkdir()
    forbid(monkeypatch, *FILE_COMMANDS["bnn-train"][1])
    before = snapshot(tmp_path)
    r = runner.invoke(app, ["bnn", "train", "--dataset", "digits", "--out", str(tmp_path / "m.pt")])
    assert_refused(r, tmp_path / "m.json")
    assert snapshot(tmp_path) == before
    r = runner.invoke(app, ["bnn", "train", "--dataset", "digits", "--out", str(tmp_path / "x.json")])
    assert_refused(r, tmp_path / "x.json")


def test_verify_default_results_file_that_is_a_directory(tmp_path, monkeypatch):
    model = make_checkpoint(tmp_path / "m.pt")
    default = tmp_path / "m.verify.eps0.1.jsonl"
    default.mkdir()
    forbid(monkeypatch, *FILE_COMMANDS["verify"][1])
    before = snapshot(tmp_path)
    r = runner.invoke(app, ["verify", "--model", str(model), "--eps", "0.1", "--timeout", "1"])
    assert_refused(r, default)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["file", "below-file", "unwritable"])
def test_evaluate_log_folder_is_checked_before_work(kind, tmp_path, monkeypatch, ckpt):
    from verifriend.app.evaluate import evaluate_checkpoint

    bad = _bad_path(kind, tmp_path)
    forbid(monkeypatch, "verifriend.app.evaluate:property_images",
           "verifriend.app.evaluate:evaluate_friendliness")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=str(bad)):
        evaluate_checkpoint(ckpt, [0.1], timeout=1, log_dir=bad, progress=False)
    assert snapshot(tmp_path) == before


def test_evaluate_cli_log_that_is_a_directory(tmp_path, monkeypatch):
    model = make_checkpoint(tmp_path / "m.pt")
    log = tmp_path / "m.eps0.1.t1.verify.jsonl"
    log.mkdir()
    forbid(monkeypatch, "verifriend.app.evaluate:property_images",
           "verifriend.app.evaluate:evaluate_friendliness")
    before = snapshot(tmp_path)
    assert_refused(runner.invoke(app, ["evaluate", str(model), "--eps", "0.1", "--timeout", "1"]),
                   log)
    assert snapshot(tmp_path) == before


# --- vnncomp: no stale verdict ------------------------------------------------------------------

def test_failed_vnncomp_run_leaves_no_result_file(tmp_path, monkeypatch):
    out = tmp_path / "result.txt"
    out.write_text("unsat\n")  # the previous instance's verdict
    r = runner.invoke(app, ["vnncomp", str(tmp_path / "missing.onnx"),
                            str(tmp_path / "missing.vnnlib"), "--out", str(out)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert not out.exists()

    out.write_text("unsat\n")

    def crash(*a, **k):
        raise RuntimeError("verifier crashed")

    monkeypatch.setattr("verifriend.app.vnncomp.run_instance", crash)
    r = runner.invoke(app, ["vnncomp", "n.onnx", "p.vnnlib", "--out", str(out)])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)
    assert not out.exists()


def test_vnncomp_writes_its_result_atomically_with_an_ordinary_mode(tmp_path, monkeypatch):
    monkeypatch.setattr("verifriend.app.vnncomp.run_instance",
                        lambda model, spec, timeout, **kw: Verdict("unsat", 0.25))
    out = tmp_path / "new" / "result.txt"
    old = os.umask(0o027)
    try:
        r = runner.invoke(app, ["vnncomp", "n.onnx", "p.vnnlib", "--out", str(out)])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert out.read_text() == "unsat\n" and "unsat" in r.output
    assert out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.txt"]


# --- verify: never overwrite a file it did not write --------------------------------------------

@pytest.mark.parametrize("content", [b'{"a": 1}\n', b"hello", b"hello\n", b"\n",
                                     b'{"index": 0, "status": "unsat"}\n'])
def test_verify_refuses_a_foreign_results_file(content, tmp_path, monkeypatch, ckpt):
    out = tmp_path / "notes.jsonl"
    out.write_bytes(content)
    forbid(monkeypatch, *FILE_COMMANDS["verify"][1])
    r = runner.invoke(app, ["verify", "--model", str(ckpt), "--eps", "0.1", "--timeout", "1",
                            "--out", str(out)])
    assert_refused(r, out)
    assert "not a verifriend campaign log" in r.output
    assert out.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.jsonl"]


# --- atomic writes: one mode for every file -----------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_mode_open_would_give(umask, tmp_path):
    from verifriend.app.artifacts import save_bnn
    from verifriend.bnn.network import BNN, BNNSpec

    old = os.umask(umask)
    try:
        assert file_mode() == 0o666 & ~umask
        stale = tmp_path / "t.txt"
        stale.write_text("old")
        stale.chmod(0o600)  # a rewrite gets the ordinary mode, not the old file's
        paths = [write_text_atomic(stale, "new"),
                 write_json_atomic(tmp_path / "sub" / "r.json", {"a": 1}),
                 write_bytes_atomic(tmp_path / "b.png", b"\x89PNG"),
                 save_torch_atomic(tmp_path / "s.pt", {"x": torch.zeros(2)})]
        make_checkpoint(tmp_path / "model.pt")
        paths.append(tmp_path / "model.pt")
        paths.append(save_bnn(BNN(BNNSpec([8, 3], input_shape=(1, 4, 4), num_classes=3)),
                              tmp_path / "bnn.pt"))
    finally:
        os.umask(old)
    for p in paths:
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p
    assert stale.read_text() == "new" and json.loads((tmp_path / "sub" / "r.json").read_text()) == {"a": 1}
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary files left


def test_a_failed_atomic_write_leaves_the_old_file_and_no_new_folder(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    with pytest.raises(RuntimeError):
        save_torch_atomic(tmp_path / "new" / "deeper" / "s.pt", _Unpicklable())
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle")


def test_checks_name_the_offending_place(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(UserError, match=f"{tmp_path / 'f'} is a file"):
        check_out_dir(tmp_path / "f" / "a" / "b")
    with pytest.raises(UserError, match="is a directory, not a file"):
        check_out_file(tmp_path)
    with pytest.raises(UserError, match="cannot be written"):
        check_out_file(UNWRITABLE / "x.json")
    assert check_out_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the probe file is gone


# --- a job that fails mid-way removes the folders it made ---------------------------------------

def test_failed_training_removes_the_folders_it_made(tmp_path, monkeypatch):
    data = tiny_data()
    monkeypatch.setattr("verifriend.data.load_dataset", lambda name, data_dir=None: data)

    def crash(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("verifriend.app.train.train_model", crash)
    out = tmp_path / "runs" / "a"
    r = runner.invoke(app, ["train", "--arch", "fc_1x20", "--epochs", "1", "--out", str(out)])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)
    assert list(tmp_path.iterdir()) == []

    # Ctrl-C: the same; a folder that was there before stays, with its files
    from verifriend.app.train import train_and_save

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("verifriend.app.train.train_model", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_and_save("fc_1x20", data, TrainConfig(epochs=1), out, progress=False)
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt):
        train_and_save("fc_1x20", data, TrainConfig(epochs=1), kept / "sub", progress=False)
    assert snapshot(tmp_path) == {"kept": None, "kept/notes.txt": b"mine"}


def test_failed_bnn_training_removes_the_folder_it_made(tmp_path, monkeypatch):
    def crash(*a, **k):
        raise RuntimeError("diverged")

    monkeypatch.setattr("verifriend.app.bnn_train.train_bnn", crash)
    r = runner.invoke(app, ["bnn", "train", "--arch", "32,16", "--dataset", "digits",
                            "--epochs", "1", "--limit", "50", "--out",
                            str(tmp_path / "new" / "m.pt")])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)
    assert list(tmp_path.iterdir()) == []


def test_failed_new_campaign_leaves_no_log_and_no_folder(tmp_path, monkeypatch):
    from verifriend.app.campaign import read_results, run_campaign

    data = tiny_data()
    monkeypatch.setattr("verifriend.data.load_dataset", lambda name, data_dir=None: data)
    model = make_checkpoint(tmp_path / "m.pt", always=0)  # image 0 (class 0) goes to the verifier
    calls = []

    def interrupt(*a, **k):
        calls.append(1)
        raise KeyboardInterrupt

    out = tmp_path / "logs" / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_campaign(model, eps=0.01, timeout=1, per_class=1, out_jsonl=out, verify=interrupt,
                     progress=False)
    assert calls == [1]  # the header was written, then the run failed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]

    # a log that was there before the run is kept, even when it holds only its header
    def unsat(*a, **k):
        return Verdict("unsat", 0.01, "bab", 1)

    run_campaign(model, eps=0.01, timeout=1, per_class=1, out_jsonl=out, verify=unsat,
                 progress=False)
    header, lines, _ = read_results(out)
    assert header is not None and len(lines) == 10
    first_line = out.read_text().splitlines(keepends=True)[0]
    out.write_text(first_line)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(model, eps=0.01, timeout=1, per_class=1, out_jsonl=out, verify=interrupt,
                     progress=False)
    assert out.read_text() == first_line
