"""The layers the VNN rewrite works on, as plain float64 arrays: a fully connected layer
(:class:`Dense`, one LP per neuron) and a 2-d convolution (:class:`Conv`, one LP per output
channel: its kernel entries and bias are the variables, shared by every position, and the
rows are every (sample, position) of the channel).

Both map flat inputs ``a`` (samples, inputs) to flat pre-activations (samples, outputs) with
:meth:`apply`; a *unit* is what one LP rewrites (a neuron, a channel), :attr:`unit_index`
maps each output to its unit, and :meth:`prepare` gives the LP rows shared by the units (the
inputs a unit's weights multiply) with, per unit, the original pre-activations to reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


class Dense(NamedTuple):
    """``z = a W^T + b``; ``W`` (outputs, inputs)."""

    W: np.ndarray
    b: np.ndarray

    @property
    def units(self) -> int:
        return self.W.shape[0]

    @property
    def unit_index(self) -> np.ndarray:
        return np.arange(self.W.shape[0])

    def apply(self, a: np.ndarray) -> np.ndarray:
        return a @ self.W.T + self.b

    def prepare(self, a: np.ndarray, z: np.ndarray, max_rows: int, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """``(rows, targets, start, info)``: the LP rows (here the samples themselves), the
        pre-activations ``z`` to reproduce (rows x units), the rows an LP starts from (None:
        all) and what was used."""
        return a, z, None, {"rows": int(a.shape[0])}

    def with_units(self, solutions: list) -> Dense:
        """Unit ``j`` takes ``solutions[j] = (w, b)``; a None keeps its weights."""
        W, bias = self.W.copy(), self.b.copy()
        for j, sol in enumerate(solutions):
            if sol is not None:
                W[j], bias[j] = sol
        return Dense(W, bias)

    def restore(self, original: Dense, units) -> Dense:
        units = list(units)
        W, b = self.W.copy(), self.b.copy()
        W[units], b[units] = original.W[units], original.b[units]
        return Dense(W, b)

    @property
    def weights(self) -> np.ndarray:
        return self.W

    def with_weights(self, W: np.ndarray) -> Dense:
        return Dense(W, self.b)


@dataclass(frozen=True, eq=False)
class Conv:
    """``z = conv2d(a, K, b)`` on inputs of ``in_shape`` (C, H, W), flattened (C, H, W)-major
    both ways; ``K`` (out channels, in channels, kh, kw), groups 1, dilation 1."""

    K: np.ndarray
    b: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_shape: tuple[int, int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        _, h, w = self.in_shape
        kh, kw = self.K.shape[2:]
        return ((h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)

    @property
    def units(self) -> int:
        return self.K.shape[0]

    @property
    def unit_index(self) -> np.ndarray:
        return np.repeat(np.arange(self.K.shape[0]), int(np.prod(self.out_hw)))

    def apply(self, a: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(a)).reshape(len(a), *self.in_shape)
        z = F.conv2d(x, torch.from_numpy(self.K), torch.from_numpy(self.b), self.stride,
                     self.padding)
        return z.reshape(len(a), -1).numpy()

    def _patches(self, a: np.ndarray) -> np.ndarray:
        """(samples * positions, C * kh * kw): each output position's receptive field."""
        x = torch.from_numpy(np.ascontiguousarray(a)).reshape(len(a), *self.in_shape)
        cols = F.unfold(x, self.K.shape[2:], padding=self.padding, stride=self.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()

    def prepare(self, a: np.ndarray, z: np.ndarray, max_rows: int, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """``(rows, targets, start, info)``: every (sample, position)'s receptive field in
        ``a`` with its pre-activations ``z`` (flat, as :meth:`apply` gives them) per channel,
        duplicates (same field, same targets) once; with more than ``max_rows`` of them,
        ``start`` is ``max_rows`` drawn at random (``seed``), the rows an LP begins with
        (:func:`~verifriend.sparsify.vnn_lp.neuron_lps` adds the violated ones); ``info``
        says how many of each."""
        patches = self._patches(a)
        n, co = len(a), self.K.shape[0]
        targets = z.reshape(n, co, -1).transpose(0, 2, 1).reshape(-1, co)
        both = np.unique(np.hstack([patches, targets]), axis=0)
        m = both.shape[0]
        start = None
        if m > max_rows:
            start = np.sort(np.random.default_rng(seed).choice(m, max_rows, replace=False))
        info = {"positions": int(patches.shape[0]), "distinct": int(m),
                "rows": int(m if start is None else max_rows)}
        d = patches.shape[1]
        return np.ascontiguousarray(both[:, :d]), np.ascontiguousarray(both[:, d:]), start, info

    def with_units(self, solutions: list) -> Conv:
        """Channel ``c`` takes ``solutions[c] = (kernel entries, b)``; a None keeps its own."""
        K, bias = self.K.copy(), self.b.copy()
        for c, sol in enumerate(solutions):
            if sol is not None:
                K[c], bias[c] = sol[0].reshape(K.shape[1:]), sol[1]
        return replace(self, K=K, b=bias)

    def restore(self, original: Conv, units) -> Conv:
        units = list(units)
        K, b = self.K.copy(), self.b.copy()
        K[units], b[units] = original.K[units], original.b[units]
        return replace(self, K=K, b=b)

    @property
    def weights(self) -> np.ndarray:
        return self.K

    def with_weights(self, K: np.ndarray) -> Conv:
        return replace(self, K=K)


Layer = Dense | Conv


def as_layer(layer) -> Layer:
    """A :class:`Dense` or :class:`Conv` (a ``(W, b)`` pair becomes a :class:`Dense`), in
    float64."""
    if isinstance(layer, Conv):
        return replace(layer, K=np.asarray(layer.K, np.float64), b=np.asarray(layer.b, np.float64))
    W, b = layer
    return Dense(np.asarray(W, np.float64), np.asarray(b, np.float64))
