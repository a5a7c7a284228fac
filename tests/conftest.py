"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

from verifriend.app.train import train_and_save
from verifriend.data import load_dataset
from verifriend.train import TrainConfig


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small fc net (1 x 20 ReLUs) trained for a few seconds on the embedded MNIST subset
    (the campaigns' tests; a module's own ``ckpt`` fixture takes precedence)."""
    data = load_dataset("mnist-embedded")
    cfg = TrainConfig(method="natural", epochs=3, lr=1e-2, limit=2000, seed=0)
    _, path, _ = train_and_save("fc_1x20", data, cfg, tmp_path_factory.mktemp("model"),
                                progress=False)
    return path
