"""Building blocks of the model zoo that plain torch.nn lacks.

Every zoo model is an ``nn.Sequential`` whose children are torch layers
(Conv2d, Linear, ReLU, Flatten, BatchNorm1d/2d, AvgPool2d, MaxPool2d) or the
two modules below. The graph IR (``verifriend.bounds.graph``) knows exactly
this vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; the first layer of every zoo model.

    Keeping normalization inside the model means inputs and epsilons are
    always in pixel space [0, 1].
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std must have the same length")
        if any(s <= 0 for s in std):
            raise ValueError("std must be positive")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def _view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # one value per channel (dim 1); broadcast over the remaining dims
        return t.view(1, -1, *([1] * (x.dim() - 2))) if x.dim() > 2 else t.view(1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class Residual(nn.Module):
    """``main(x) + shortcut(x)``; ``shortcut=None`` means the identity.

    Both branches are ``nn.Sequential`` of zoo layers. A ReLU after the sum is
    a separate layer in the enclosing Sequential.
    """

    def __init__(self, main: nn.Sequential, shortcut: nn.Sequential | None = None):
        super().__init__()
        self.main = main
        self.shortcut = shortcut if shortcut is not None else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)
