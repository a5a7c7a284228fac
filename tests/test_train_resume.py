"""`verifriend train` killed mid-epoch and started again ends where an uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from verifriend.cli import app
from verifriend.models import load_model

# The CLI; with VF_TEST_KILL_AT_BATCH=N in the environment the process SIGKILLs itself in
# its N-th training batch (counted over all epochs), before that batch's loss is computed.
KILL_VAR = "VF_TEST_KILL_AT_BATCH"
_CLI = """
import os, signal, sys
from verifriend.train import trainer
kill_at = int(os.environ.get("VF_TEST_KILL_AT_BATCH", "0"))  # 0: never
calls = [0]
real = trainer.loss_for
def counting(cfg):
    fn = real(cfg)
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*a, **k)
    return wrapped
trainer.loss_for = counting
from verifriend.cli import app
sys.argv = ["verifriend", *sys.argv[1:]]
app()
"""

ARGS = ["train", "--method", "madry", "--method", "nbc", "--arch", "fc_1x20", "--epochs", "3",
        "--limit", "512", "--batch-size", "64", "--eps", "0.05", "--lr", "1e-3"]
BATCHES_PER_EPOCH = 512 // 64  # --limit / --batch-size (no validation split)
KILL_AT = BATCHES_PER_EPOCH + 3  # the third batch of epoch 2, after epoch 1's state is saved


def _weights(path):
    net, _ = load_model(path)
    return [t.detach().clone() for t in net.state_dict().values()]


def _run(cmd, env):
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{cmd[3:]} did not finish within 600 s")


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    # every run has the same thread count (a different count sums in another order: other
    # weights, rightly); only the first one is killed
    env = {k: v for k, v in os.environ.items() if k != KILL_VAR}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cli = [sys.executable, "-c", _CLI]
    killed = tmp_path / "killed"
    r = _run([*cli, *ARGS, "--out", str(killed)], {**env, KILL_VAR: str(KILL_AT)})
    assert r.returncode == -signal.SIGKILL, f"training was not killed: {r.stderr}"
    saved = torch.load(killed / "model.state.pt", weights_only=False)  # what a resume reads
    assert saved["state"]["epoch"] == 1  # epoch 1's state, the kill came in epoch 2
    before = json.loads((killed / "model.train.json").read_text())["history"]
    assert [h["epoch"] for h in before] == [1]

    r = _run([*cli, *ARGS, "--out", str(killed)], env)  # the same command again
    assert r.returncode == 0, r.stderr
    after = json.loads((killed / "model.train.json").read_text())["history"]
    assert [h["epoch"] for h in after] == [1, 2, 3]
    assert after[: len(before)] == before

    straight = tmp_path / "straight"
    r = _run([*cli, *ARGS, "--out", str(straight)], env)
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
    from verifriend.app.train import train_and_save
    from verifriend.data import load_dataset
    from verifriend.train import TrainConfig, trainer
    from verifriend.train.recipe import load_recipe

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


def test_a_state_saved_before_a_new_option_existed_still_resumes(tmp_path):
    """A config saved without a field added later (here nbc_step) means that field's
    default, so the finished run is found again instead of refused as another config."""
    from verifriend.app.train import train_and_save
    from verifriend.data import load_dataset
    from verifriend.train import TrainConfig

    data = load_dataset("mnist-embedded")
    cfg = TrainConfig(method="nbc", epochs=1, limit=128, batch_size=64, eps=0.05, nbc_k=1)
    _, ckpt, _ = train_and_save("fc_1x20", data, cfg, tmp_path, progress=False)
    state = tmp_path / "model.state.pt"
    saved = torch.load(state, weights_only=False)
    del saved["meta"]["config"]["nbc_step"]
    torch.save(saved, state)
    before = ckpt.stat().st_mtime_ns
    train_and_save("fc_1x20", data, cfg, tmp_path, progress=False)
    assert ckpt.stat().st_mtime_ns == before  # found finished, not retrained
    saved["meta"]["config"]["nbc_beta"] = 5.0  # a real difference is still refused
    torch.save(saved, state)
    with pytest.raises(Exception, match="another arch, data set or config"):
        train_and_save("fc_1x20", data, cfg, tmp_path, progress=False)
