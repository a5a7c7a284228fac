"""The exact integer form of a trained BNN: the plain data the encoder and the replay read.

A network maps an input image x in [0, 1] to quantized levels q = floor(x / step) (integers in
0..levels), then through binarized layers a = [W a_prev >= threshold] (W in {-1, 0, 1}, a in
{0, 1}; the first layer reads q itself), then to real logits scale * (W_out a) + bias.
BatchNorm and the sign of its scale are folded into W and threshold by the exporter, so every
number here is an integer except the output's scale and bias.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse


@dataclass
class IntLayer:
    """a_i = 1 iff sum_j weight[i, j] * x_j >= threshold[i] (weight in {-1,0,1}, sparse CSR).

    Convolutions are unrolled into these rows by the exporter; CSR keeps them small.
    """

    weight: sparse.csr_array  # int8 [out, in]
    threshold: np.ndarray  # int64 [out]

    def __post_init__(self) -> None:
        self.weight = sparse.csr_array(self.weight, dtype=np.int8)
        self.weight.eliminate_zeros()
        self.threshold = np.asarray(self.threshold, dtype=np.int64)
        if self.threshold.shape != (self.weight.shape[0],):
            raise ValueError("IntLayer: weight must be [out, in] and threshold [out]")
        if np.abs(self.weight.data).max(initial=0) > 1:
            raise ValueError("IntLayer: weights must lie in {-1, 0, 1}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Activations (0/1, int64) for integer inputs x ([in] or [batch, in])."""
        x = np.asarray(x, dtype=np.int64)
        w = self.weight.astype(np.int64)
        z = w @ x if x.ndim == 1 else (w @ x.T).T
        return (z >= self.threshold).astype(np.int64)


@dataclass
class IntOutput:
    """logits = scale * (weight @ a) + bias; class c beats class y iff its logit is >= y's."""

    weight: np.ndarray  # int8 [classes, in]
    scale: float
    bias: np.ndarray  # float64 [classes]

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, dtype=np.int8)
        self.bias = np.asarray(self.bias, dtype=np.float64)
        self.scale = float(self.scale)
        if self.bias.shape != (self.weight.shape[0],):
            raise ValueError("IntOutput: bias must be [classes]")

    def scores(self, a: np.ndarray) -> np.ndarray:
        """Integer scores W a (int64): the logits are an affine function of them."""
        return np.asarray(a, dtype=np.int64) @ self.weight.T.astype(np.int64)

    def logits(self, a: np.ndarray) -> np.ndarray:
        return self.scale * self.scores(a).astype(np.float64) + self.bias

    def beats(self, c: int, y: int) -> tuple[int, int | None]:
        """(sign, m): class c's logit is >= class y's iff sign * (score_c - score_y) >= m.

        Scores are integers, so this turns the real comparison into an exact integer one;
        the encoder and the replay both use it. m is None when the answer is the same for
        every score (scale 0): then sign says it (1: always beats, -1: never).
        """
        gap = float(self.bias[y] - self.bias[c])  # need scale * d >= gap, d = score_c - score_y
        if self.scale > 0:
            return 1, math.ceil(gap / self.scale)
        if self.scale < 0:
            return -1, math.ceil(gap / -self.scale)
        return (1 if gap <= 0 else -1), None


@dataclass
class IntBNN:
    """A BNN in exact integer form (see the module docstring)."""

    input_shape: tuple[int, ...]  # e.g. (1, 28, 28); inputs are flattened in C order
    step: float  # input quantization step s
    levels: int  # q ranges over 0..levels
    layers: list[IntLayer]
    output: IntOutput
    meta: dict = field(default_factory=dict)

    @property
    def num_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def num_classes(self) -> int:
        return int(self.output.weight.shape[0])

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Levels q = floor(x / step) clipped to 0..levels, flattened (batch kept)."""
        x = np.asarray(x, dtype=np.float64)
        batch = x.shape[: x.ndim - len(self.input_shape)]
        q = np.floor(x.reshape(*batch, self.num_inputs) / self.step + 1e-9)
        return np.clip(q, 0, self.levels).astype(np.int64)

    def hidden(self, q: np.ndarray) -> np.ndarray:
        a = np.asarray(q, dtype=np.int64)
        for layer in self.layers:
            a = layer.forward(a)
        return a

    def logits(self, q: np.ndarray) -> np.ndarray:
        """Real logits for integer levels q ([in] or [batch, in])."""
        return self.output.logits(self.hidden(q))

    def misclassified(self, q: np.ndarray, label: int) -> bool:
        """True when some other class's logit is >= the label's (ties count as errors).

        Decided in exact integer arithmetic through `IntOutput.beats`.
        """
        s = self.output.scores(self.hidden(q))
        for c in range(self.num_classes):
            if c == label:
                continue
            sign, m = self.output.beats(c, label)
            if (sign > 0) if m is None else sign * int(s[c] - s[label]) >= m:
                return True
        return False

    def predict(self, q: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(q), axis=-1)


def random_int_bnn(
    rng: np.random.Generator,
    widths: list[int],
    levels: int = 3,
    density: float = 0.6,
) -> IntBNN:
    """A random IntBNN with widths [inputs, hidden..., classes] (for tests and fuzzing)."""
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths[:-1])):
        w = rng.choice([-1, 1], size=(n_out, n_in)) * (rng.random((n_out, n_in)) < density)
        top = levels if i == 0 else 1
        half = int(np.abs(w).sum(axis=1).max(initial=1) * top) // 2
        thr = rng.integers(-half, half + 1, size=n_out)
        layers.append(IntLayer(w, thr))
    n_in, n_cls = widths[-2], widths[-1]
    w = rng.choice([-1, 1], size=(n_cls, n_in)) * (rng.random((n_cls, n_in)) < density)
    out = IntOutput(w, scale=float(rng.uniform(0.1, 2.0)), bias=rng.normal(0, 1, n_cls))
    return IntBNN((widths[0],), 1.0 / levels, levels, layers, out)
