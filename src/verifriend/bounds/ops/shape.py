"""Operators that only rearrange values: Flatten."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from torch import Tensor

from verifriend.bounds.ops.base import BackwardResult, Interval, MilpStep, Node, Shape


@dataclass(eq=False, kw_only=True)
class FlattenNode(Node):
    in_shape: Shape

    elementwise: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    def interval(self, x: Interval) -> Interval:
        return x[0].flatten(1), x[1].flatten(1)

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        return (A.reshape(*A.shape[:2], *self.in_shape),), None

    def milp_columns(self, src: list[np.ndarray]) -> np.ndarray:
        return src[0]

    def milp(self, step: MilpStep) -> None:
        pass  # the input's columns, reused
