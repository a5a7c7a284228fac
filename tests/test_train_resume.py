"""`verifriend train` killed mid-epoch and started again ends where an uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from verifriend.cli import app
from verifriend.models import load_model

# the same CLI with every loss evaluation slowed down, so that a kill lands mid-epoch
_SLOW_CLI = """
import sys, time
from verifriend.train import trainer
real = trainer.loss_for
def slow(cfg):
    fn = real(cfg)
    def wrapped(*a, **k):
        time.sleep(0.05)
        return fn(*a, **k)
    return wrapped
trainer.loss_for = slow
from verifriend.cli import app
sys.argv = ["verifriend", *sys.argv[1:]]
app()
"""

ARGS = ["train", "--method", "madry", "--method", "nbc", "--arch", "fc_1x20", "--epochs", "3",
        "--limit", "512", "--batch-size", "64", "--eps", "0.05", "--lr", "1e-3"]


def _weights(path):
    net, _ = load_model(path)
    return [t.detach().clone() for t in net.state_dict().values()]


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-c", _SLOW_CLI, *ARGS, "--out", str(killed)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not (killed / "model.state.pt").exists():  # epoch 1 finished
            if proc.poll() is not None:
                pytest.fail(f"training ended before the kill: {proc.stderr.read().decode()}")
            if time.monotonic() - start > 120:
                pytest.skip("the first epoch took over 120 s on this machine")
            time.sleep(0.02)
        time.sleep(0.2)  # into epoch 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = json.loads((killed / "model.train.json").read_text())["history"]
    assert 1 <= len(before) < 3

    # the restart and the uninterrupted run go through the same plain CLI with the same
    # thread count (a different count sums in another order: other weights, rightly)
    plain = [sys.executable, "-c", _SLOW_CLI.replace("time.sleep(0.05)", "pass")]
    r = subprocess.run([*plain, *ARGS, "--out", str(killed)], env=env, capture_output=True,
                       text=True, timeout=300, check=False)  # the same command again
    assert r.returncode == 0, r.stderr
    after = json.loads((killed / "model.train.json").read_text())["history"]
    assert [h["epoch"] for h in after] == [1, 2, 3]
    assert after[: len(before)] == before

    straight = tmp_path / "straight"
    r = subprocess.run([*plain, *ARGS, "--out", str(straight)], env=env, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    for a, b in zip(_weights(killed / "model.pt"), _weights(straight / "model.pt"), strict=True):
        assert torch.equal(a, b)

    runner = CliRunner()

    # another config on the same directory is refused in one sentence; --restart starts over
    other = [*ARGS[:-2], "--lr", "2e-3", "--out", str(killed)]
    r = runner.invoke(app, other)
    assert r.exit_code == 2 and "another --out" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, [*other, "--restart"])
    assert r.exit_code == 0, r.output


def test_recipe_phases_resume_after_a_crash_in_a_later_phase(tmp_path, monkeypatch):
    from verifriend.data import load_dataset
    from verifriend.train import TrainConfig, trainer
    from verifriend.train.recipe import load_recipe
    from verifriend.workflows import train_and_save

    recipe = tmp_path / "r.yaml"
    recipe.write_text("phases:\n  - {method: natural, epochs: 1}\n"
                      "  - {method: madry+nbc, epochs: 2, lr: 0.002}\n")
    base = TrainConfig(epochs=9, eps=0.05, lr=1e-3, batch_size=64, limit=256, pgd_steps=2,
                       nbc_k=2)
    phases = load_recipe(recipe, base)
    assert [(p.method, p.epochs, p.lr) for p in phases] == [("natural", 1, 1e-3),
                                                             ("madry+nbc", 2, 2e-3)]
    data = load_dataset("mnist-embedded")
    straight, _, h_straight = train_and_save("fc_1x20", data, phases, tmp_path / "a",
                                             progress=False)
    assert [(h["phase"], h["epoch"]) for h in h_straight] == [(1, 1), (2, 1), (2, 2)]

    real, calls = trainer.loss_for, {"n": 0}

    def crashing(cfg):
        fn = real(cfg)

        def wrapped(*a, **k):
            calls["n"] += 1
            if calls["n"] == 4 + 4 + 2:  # phase 2, epoch 2, third batch (4 batches an epoch)
                raise KeyboardInterrupt
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(trainer, "loss_for", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_and_save("fc_1x20", data, phases, tmp_path / "b", progress=False)
    monkeypatch.setattr(trainer, "loss_for", real)
    resumed, _, h_resumed = train_and_save("fc_1x20", data, phases, tmp_path / "b",
                                           progress=False)
    assert [(h["phase"], h["epoch"]) for h in h_resumed] == [(1, 1), (2, 1), (2, 2)]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_bad_recipes_are_one_sentence_errors(tmp_path):
    from verifriend.errors import UserError
    from verifriend.train import TrainConfig
    from verifriend.train.recipe import load_recipe

    cases = {"missing.yaml": None, "list.yaml": "- 1\n", "empty.yaml": "phases: []\n",
             "bad.yaml": "phases:\n  - {method: magic}\n", "yaml.yaml": "phases: [\n",
             "key.yaml": "phases: [{epochs: 1}]\nextra: 1\n"}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(UserError):
            load_recipe(path, TrainConfig())
