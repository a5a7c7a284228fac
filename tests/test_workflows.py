"""Train-and-save: a seed fixes the whole run, initial weights included."""

from __future__ import annotations

import torch

from verifriend.app.train import train_and_save
from verifriend.data import load_dataset
from verifriend.train import TrainConfig


def _weights(tmp_path, name, seed):
    data = load_dataset("mnist-embedded")
    cfg = TrainConfig(method="natural", epochs=1, lr=1e-3, limit=128, seed=seed)
    model, _, _ = train_and_save("fc_1x20", data, cfg, tmp_path, name=name, progress=False)
    return [p.detach().clone() for p in model.parameters()]


def test_same_seed_same_weights_different_seed_different(tmp_path):
    a = _weights(tmp_path, "a", seed=3)
    torch.rand(10)  # disturb the global generator between the runs
    b = _weights(tmp_path, "b", seed=3)
    c = _weights(tmp_path, "c", seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))
