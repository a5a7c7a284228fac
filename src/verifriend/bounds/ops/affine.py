"""Per-channel scale and shift ``x * scale + shift``: folded normalization and eval-mode
batch norm."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from verifriend.bounds.ops.base import (
    BackwardResult,
    Interval,
    MilpStep,
    Node,
    PatchStep,
    bias_term,
)


@dataclass(eq=False, kw_only=True)
class AffineNode(Node):
    """``x * scale + shift`` with one scale/shift per channel (dim 1 of the batch)."""

    scale: Tensor = field(repr=False)  # (channels,)
    shift: Tensor = field(repr=False)  # (channels,)

    elementwise: ClassVar[bool] = True

    def per_channel(self, t: Tensor, sample_dims: int | None = None) -> Tensor:
        """``t`` (channels,) shaped to broadcast against one sample of this node."""
        dims = len(self.shape) if sample_dims is None else sample_dims
        return t.view(-1, *([1] * (dims - 1)))

    def forward(self, x: Tensor) -> Tensor:
        dims = x.dim() - 1
        return x * self.per_channel(self.scale, dims) + self.per_channel(self.shift, dims)

    def interval(self, x: Interval) -> Interval:
        scale, shift = self.per_channel(self.scale), self.per_channel(self.shift)
        a, b = x[0] * scale + shift, x[1] * scale + shift
        return torch.minimum(a, b), torch.maximum(a, b)  # a negative scale swaps the ends

    def difference(self, pre: Interval | None) -> AffineNode:
        return replace(self, shift=torch.zeros_like(self.shift))

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        return (A * self.per_channel(self.scale),), bias_term(A, self.shift)

    patchable: ClassVar[bool] = True

    def backward_patches(self, P: Tensor, step: PatchStep) -> tuple[Tensor, Tensor | None]:
        return P * self.scale.view(-1, 1, 1), P.sum((-2, -1)) @ self.shift

    def milp(self, step: MilpStep) -> None:
        ones = torch.ones(1, *self.shape, dtype=torch.float64)
        scale = (ones * self.per_channel(self.scale)).reshape(-1).numpy()
        shift = (ones * self.per_channel(self.shift)).reshape(-1).numpy()
        k = np.arange(step.out.size)
        step.rows.rows(shift, shift, (k, step.out, np.ones(k.size)), (k, step.src[0], -scale))
