"""Linear (fully connected) layer: ``y = W x + b``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.ops.base import BackwardResult, Interval, MilpStep, Node, center_radius
from verifriend.bounds.ops.milp_rows import affine_rows


@dataclass(eq=False, kw_only=True)
class LinearNode(Node):
    weight: Tensor = field(repr=False)  # (out, in)
    bias: Tensor = field(repr=False)  # (out,)

    mixing: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def interval(self, x: Interval) -> Interval:
        c, r = center_radius(*x)
        mid, rad = F.linear(c, self.weight, self.bias), F.linear(r, self.weight.abs())
        return mid - rad, mid + rad

    def difference(self, pre: Interval | None) -> LinearNode:
        return replace(self, bias=torch.zeros_like(self.bias))

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        return (A @ self.weight,), A @ self.bias

    def milp(self, step: MilpStep) -> None:
        affine_rows(step.rows, step.out, step.src[0], self.weight.numpy(), self.bias.numpy())
