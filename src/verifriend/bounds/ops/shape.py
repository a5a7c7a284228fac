"""Operators that only rearrange values: Flatten, Permute and zero Pad."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from verifriend.bounds.ops.base import BackwardResult, Interval, MilpStep, Node, Shape


@dataclass(eq=False, kw_only=True)
class FlattenNode(Node):
    in_shape: Shape

    elementwise: ClassVar[bool] = True
    linear: ClassVar[bool] = True

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


@dataclass(eq=False, kw_only=True)
class PermuteNode(Node):
    """A reordering of the sample's axes (e.g. an NHWC input to the NCHW the layers use):
    ``dims`` is the permutation of the non-batch axes."""

    dims: tuple[int, ...]

    elementwise: ClassVar[bool] = True  # a fixed permutation of the inputs
    linear: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, *(d + 1 for d in self.dims))

    def interval(self, x: Interval) -> Interval:
        return self.forward(x[0]), self.forward(x[1])

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        inverse = np.argsort(self.dims)
        return (A.permute(0, 1, *(int(d) + 2 for d in inverse)),), None

    def milp_columns(self, src: list[np.ndarray]) -> np.ndarray:
        in_shape = tuple(self.shape[int(k)] for k in np.argsort(self.dims))
        return src[0].reshape(in_shape).transpose(self.dims).reshape(-1)

    def milp(self, step: MilpStep) -> None:
        pass  # the input's columns, reordered


@dataclass(eq=False, kw_only=True)
class PadNode(Node):
    """Zero padding of a (C, H, W) map by ``pads = (top, bottom, left, right)`` (any sizes,
    so also the asymmetric padding of TensorFlow's "same" and of ceil-mode pooling)."""

    pads: tuple[int, int, int, int]

    elementwise: ClassVar[bool] = True  # each output is an input or a constant 0
    linear: ClassVar[bool] = True

    def forward(self, x: Tensor) -> Tensor:
        t, b, left, r = self.pads
        return F.pad(x, (left, r, t, b))

    def interval(self, x: Interval) -> Interval:
        return self.forward(x[0]), self.forward(x[1])

    def backward(self, A: Tensor, ins, alpha) -> BackwardResult:
        t, _, left, _ = self.pads
        H, W = ins[0][0].shape[-2:]
        return (A[..., t:t + H, left:left + W],), None  # the adjoint of padding: a crop

    def milp(self, step: MilpStep) -> None:
        t, b, left, r = self.pads
        C, H, W = self.shape
        out = step.out.reshape(C, H, W)
        inner = np.zeros((C, H, W), dtype=bool)
        inner[:, t:H - b, left:W - r] = True
        step.bound_fix.append((out[~inner], 0.0, 0.0))
        k = int(inner.sum())
        one = np.ones(k)
        step.rows.rows(np.zeros(k), np.zeros(k), (np.arange(k), out[inner], one),
                       (np.arange(k), step.src[0], -one))  # out = in inside
