"""Encode a BNN once as reified cardinality constraints; each query is a set of assumptions.

Variables:
- every input pixel j has a thermometer t[j, k] <-> q_j >= k for k = 1..levels, with
  t[j, k+1] -> t[j, k] for every k, so q_j = sum_k t[j, k];
- every hidden neuron i of layer l has a_i <-> (sum of its literals) >= bound, BatchNorm
  already folded into the integer threshold by the exporter; a weight -1 turns x into
  (1 - x), i.e. the negated literal, and moves the bound;
- for every ordered class pair (c, y), b[c, y] <-> class c's logit >= class y's;
- a label selector L_y per class with the goal clause  -L_y or OR_{c != y} b[c, y]
  (untargeted attack), or, for ensembles with a reject option, -L_y or OR_{c != y} A_c
  where A_c means every model ranks c first.

A query (image box, label) is only assumptions: the boundary thermometer bits of each pixel's
level interval and the label selectors, so one encoding (and a solver's learned clauses) serves
every image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifriend.bnn.formula import CardFormula
from verifriend.bnn.integer import IntBNN, IntLayer


@dataclass
class EncodedBNN:
    formula: CardFormula
    nets: list[IntBNN]
    thermometer: np.ndarray  # int64 [num_inputs, levels]: variable of t[j, k+1]
    hidden: list[list[np.ndarray]]  # per net, per layer: the activation variables
    labels: np.ndarray  # int64 [classes]: label selector variables
    build_s: float

    @property
    def levels(self) -> int:
        return self.nets[0].levels

    def level_box(self, x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """The quantized levels reachable from the L-inf ball of radius eps around x in [0,1]."""
        net = self.nets[0]
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        lo = net.quantize(np.clip(x - eps, 0.0, 1.0))
        hi = net.quantize(np.clip(x + eps, 0.0, 1.0))
        return lo, hi

    def assumptions(self, lo: np.ndarray, hi: np.ndarray, label: int) -> list[int]:
        """Assumptions restricting every pixel j to levels lo[j]..hi[j] and fixing the label."""
        lo = np.asarray(lo, dtype=np.int64)
        hi = np.asarray(hi, dtype=np.int64)
        if lo.shape != (self.thermometer.shape[0],) or hi.shape != lo.shape:
            raise ValueError("level box does not match the network's input size")
        if (lo > hi).any() or lo.min(initial=0) < 0 or hi.max(initial=0) > self.levels:
            raise ValueError("level box is empty or outside 0..levels")
        rows = np.arange(len(lo))
        # the order clauses propagate the rest of each thermometer from its two boundary bits
        on = self.thermometer[rows[lo > 0], lo[lo > 0] - 1]
        off = self.thermometer[rows[hi < self.levels], hi[hi < self.levels]]
        sel = [int(v) if c == label else -int(v) for c, v in enumerate(self.labels)]
        return [int(v) for v in on] + [-int(v) for v in off] + sel

    def decode(self, model: list[int]) -> np.ndarray:
        """Input levels q (int64 [num_inputs]) from a solver model."""
        true = np.zeros(self.formula.num_vars + 1, dtype=bool)
        m = np.asarray(model, dtype=np.int64)
        true[m[m > 0]] = True
        return true[self.thermometer].sum(axis=1).astype(np.int64)


def _layer_cards(
    f: CardFormula, layer: IntLayer, inputs: list[list[int]], top: int
) -> np.ndarray:
    """Reified cards for one layer; inputs[j] lists the literals whose count is input j.

    An input j with weight +1 contributes its literals, with weight -1 their negations; each
    negated literal adds 1 to the count, so the bound rises by len(inputs[j]) (= top).
    """
    w = layer.weight
    out = np.empty(w.shape[0], dtype=np.int64)
    for i in range(w.shape[0]):
        cols = w.indices[w.indptr[i]:w.indptr[i + 1]]
        vals = w.data[w.indptr[i]:w.indptr[i + 1]]
        lits: list[int] = []
        for j, v in zip(cols, vals, strict=True):
            lits.extend(inputs[j] if v > 0 else [-lit for lit in inputs[j]])
        bound = int(layer.threshold[i]) + top * int((vals < 0).sum())
        y = f.new_var()
        f.add_card(y, lits, bound)
        out[i] = y
    return out


def _beats_cards(f: CardFormula, net: IntBNN, acts: np.ndarray) -> dict[tuple[int, int], int]:
    """b[c, y] <-> logit_c >= logit_y, over the last hidden layer's variables acts."""
    w = net.output.weight.astype(np.int64)
    if w.shape[1] != len(acts):
        raise ValueError("output layer width does not match the last hidden layer")
    beats: dict[tuple[int, int], int] = {}
    for c in range(net.num_classes):
        for y in range(net.num_classes):
            if c == y:
                continue
            sign, m = net.output.beats(c, y)
            v = f.new_var()
            if m is None:  # scale 0: the comparison does not depend on the input
                f.add_clause([v if sign > 0 else -v])
            else:
                d = sign * (w[c] - w[y])
                lits: list[int] = []
                for j in np.nonzero(d)[0]:
                    lit = int(acts[j]) if d[j] > 0 else -int(acts[j])
                    lits.extend([lit] * abs(int(d[j])))
                f.add_card(v, lits, m + int(-d[d < 0].sum()))
            beats[c, y] = v
    return beats


def encode(nets: IntBNN | list[IntBNN]) -> EncodedBNN:
    """Encode one BNN (untargeted attack) or an ensemble (attack = all models agree on a
    wrong class; a disagreement is a reject, which counts as safe)."""
    t0 = time.perf_counter()
    nets = [nets] if isinstance(nets, IntBNN) else list(nets)
    if not nets:
        raise ValueError("encode: no network")
    first = nets[0]
    for net in nets[1:]:
        if (net.input_shape, net.step, net.levels, net.num_classes) != (
            first.input_shape, first.step, first.levels, first.num_classes
        ):
            raise ValueError("ensemble members must share input shape, quantization and classes")
    f = CardFormula()
    n_in, levels, n_cls = first.num_inputs, first.levels, first.num_classes
    therm = np.arange(1, n_in * levels + 1, dtype=np.int64).reshape(n_in, levels)
    f.num_vars = n_in * levels
    for k in range(levels - 1):
        for j in range(n_in):
            f.add_clause([-int(therm[j, k + 1]), int(therm[j, k])])
    pixel_lits = [[int(v) for v in therm[j]] for j in range(n_in)]
    f.priority = [int(v) for v in therm.reshape(-1)]

    hidden: list[list[np.ndarray]] = []
    beats: list[dict[tuple[int, int], int]] = []
    for net in nets:
        layers: list[np.ndarray] = []
        inputs, top = pixel_lits, levels
        for layer in net.layers:
            if layer.weight.shape[1] != len(inputs):
                raise ValueError("layer input width does not match the previous layer")
            acts = _layer_cards(f, layer, inputs, top)
            layers.append(acts)
            inputs, top = [[int(v)] for v in acts], 1
        hidden.append(layers)
        last = layers[-1] if layers else therm[:, 0]
        if not layers and levels != 1:
            raise ValueError("a BNN needs at least one hidden layer")
        beats.append(_beats_cards(f, net, last))

    labels = np.array([f.new_var() for _ in range(n_cls)], dtype=np.int64)
    for y in range(n_cls):
        if len(nets) == 1:
            wrong = [beats[0][c, y] for c in range(n_cls) if c != y]
        else:
            wrong = []
            for c in range(n_cls):
                if c == y:
                    continue
                agree = f.new_var()  # A_c -> every model ranks c at least as high as all others
                for b in beats:
                    for u in range(n_cls):
                        if u != c:
                            f.add_clause([-agree, b[c, u]])
                wrong.append(agree)
        f.add_clause([-int(labels[y])] + wrong)
    return EncodedBNN(f, nets, therm, hidden, labels, time.perf_counter() - t0)


def counterexample(enc: EncodedBNN, q: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """A real input in the eps-ball around x whose quantized levels are q (a solver's model)."""
    net = enc.nets[0]
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    cell_lo = q * net.step
    cell_hi = (q + 1) * net.step
    lo = np.maximum(np.clip(x - eps, 0.0, 1.0), cell_lo)
    hi = np.minimum(np.clip(x + eps, 0.0, 1.0), cell_hi)
    # the middle of the cell's part of the ball quantizes back to q away from its edges
    return ((lo + hi) / 2).reshape(net.input_shape)
