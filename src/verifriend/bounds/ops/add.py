"""Elementwise sum of two nodes (residual connections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from torch import Tensor

from verifriend.bounds.ops.base import BackwardResult, Interval, MilpStep, Node


@dataclass(eq=False, kw_only=True)
class AddNode(Node):
    linear: ClassVar[bool] = True

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def interval(self, a: Interval, b: Interval) -> Interval:
        return a[0] + b[0], a[1] + b[1]

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        return (A, A), None

    def milp(self, step: MilpStep) -> None:
        k = np.arange(step.out.size)
        one = np.ones(k.size)
        step.rows.rows(0.0 * one, 0.0 * one, (k, step.out, one), (k, step.src[0], -one),
                       (k, step.src[1], -one))
