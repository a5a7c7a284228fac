"""Properties for the soundness campaign and their VNN-LIB text.

``make_prop`` draws a property for a network: Linf robustness around a point (``robust``)
or a general one (``general``: OR of ANDs of linear output constraints, sometimes over an OR
of input boxes), with boxes wide, narrow, 1e-6 wide or with degenerate dimensions;
``vnnlib_text`` writes it as VNN-LIB in a few equivalent syntactic shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .netgen import Net, forward

# ------------------------------------------------------------------ properties


@dataclass
class Prop:
    """Input boxes (an OR) and an unsafe region: OR over clauses of ``A Y >= b``."""

    kind: str  # "robust" | "general"
    boxes: list[tuple[np.ndarray, np.ndarray]]
    clauses: list[tuple[np.ndarray, np.ndarray]]
    ref: int | None = None  # robustness: the reference class
    box_styles: list[str] = field(default_factory=list)

    def margins(self, y: np.ndarray) -> np.ndarray:
        """Per clause, ``min_k (a_k . y - b_k)`` in float64 (>= 0: the clause is reached)."""
        return np.array([float(np.min(A @ y - b)) for A, b in self.clauses])

    def in_box(self, x: np.ndarray) -> bool:
        return any(bool(np.all(lo <= x) and np.all(x <= hi)) for lo, hi in self.boxes)


def _num(v: float, rng) -> str:
    """A float64 as VNN-LIB text that reads back exactly; negatives sometimes as (- v)."""
    v = float(v) + 0.0
    if v < 0 and rng.random() < 0.3:
        return f"(- {-v!r})"
    return repr(v)


def vnnlib_text(prop: Prop, n_in: int, n_out: int, rng) -> str:
    """The property as VNN-LIB text, in a few equivalent syntactic shapes."""
    lines = [f"; soundness campaign: {prop.kind}", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(n_in)] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)] + [""]

    def box_atoms(lo, hi):
        out = []
        for i in range(n_in):
            lo_t, hi_t = _num(lo[i], rng), _num(hi[i], rng)
            out.append(f"(>= X_{i} {lo_t})" if rng.random() < 0.7 else f"(<= {lo_t} X_{i})")
            out.append(f"(<= X_{i} {hi_t})" if rng.random() < 0.7 else f"(>= {hi_t} X_{i})")
        return out

    if len(prop.boxes) == 1:
        lines += [f"(assert {a})" for a in box_atoms(*prop.boxes[0])]
    else:
        lines.append("(assert (or")
        lines += [f"  (and {' '.join(box_atoms(lo, hi))})" for lo, hi in prop.boxes]
        lines.append("))")
    lines.append("")
    ge, le = (">=", "<=") if rng.random() < 0.7 else (">", "<")

    def row_atom(a, b):
        nz = np.flatnonzero(a)
        if len(nz) == 2 and b == 0 and sorted(a[nz].tolist()) == [-1.0, 1.0]:
            pos, neg = (nz[0], nz[1]) if a[nz[0]] > 0 else (nz[1], nz[0])
            return (f"({ge} Y_{pos} Y_{neg})" if rng.random() < 0.5
                    else f"({le} Y_{neg} Y_{pos})")
        if len(nz) == 1 and a[nz[0]] == 1.0:
            return f"({ge} Y_{nz[0]} {_num(b, rng)})"
        if len(nz) == 1 and a[nz[0]] == -1.0:
            return f"({le} Y_{nz[0]} {_num(-b, rng)})"
        term = "(+ " + " ".join(f"(* {_num(a[j], rng)} Y_{j})" for j in nz) + ")"
        if rng.random() < 0.5:
            return f"({ge} {term} {_num(b, rng)})"
        return f"({le} {_num(b, rng)} {term})"

    groups = [[row_atom(A[k], float(b[k])) for k in range(len(b))] for A, b in prop.clauses]
    if len(groups) == 1 and rng.random() < 0.5:
        lines += [f"(assert {g})" for g in groups[0]]
    else:
        lines.append("(assert (or")
        lines += [f"  (and {' '.join(g)})" for g in groups]
        lines.append("))")
    return "\n".join(lines) + "\n"


def _box_general(rng, n: int, free_dims: int | None, family: str, kind: str):
    center = rng.uniform(-1.0, 1.0, n)
    style = str(rng.choice(["wide", "narrow", "mixed", "tiny"], p=[0.45, 0.15, 0.3, 0.1]))
    wide = 0.15 if (kind == "conv" and family == "relu") else 1.0
    if style == "wide":
        half = rng.uniform(0.05, wide, n)
    elif style == "narrow":
        half = 10.0 ** rng.uniform(-4, -2, n)
    elif style == "tiny":
        half = np.full(n, 5e-7)
    else:
        pick = rng.choice(4, n, p=[0.4, 0.3, 0.15, 0.15])
        half = np.choose(pick, [rng.uniform(0.05, wide, n), 10.0 ** rng.uniform(-4, -2, n),
                                np.full(n, 5e-7), np.zeros(n)])
    if free_dims is not None and n > free_dims:
        fixed = rng.permutation(n)[free_dims:]
        half[fixed] = 0.0
    lo, hi = center - half, center + half
    return lo, hi, style


def make_prop(rng, net: Net, layers, acts, kind: str) -> Prop:
    n, n_out = net.n_in, layers[-1][0].shape[0]
    free = 3 if net.family == "s-shaped" else None
    if kind == "robust":
        x0 = rng.uniform(0.0, 1.0, n)
        top = {"fc": 0.5, "conv": 0.08}[net.kind] if net.family == "relu" else 1.0
        eps = 5e-7 if rng.random() < 0.1 else 10.0 ** rng.uniform(-3.0, math.log10(top))
        half = np.full(n, eps)
        if free is not None and n > free:
            half[rng.permutation(n)[free:]] = 0.0
        elif rng.random() < 0.15:
            half[rng.random(n) < 0.3] = 0.0  # a few degenerate dimensions
        lo, hi = np.clip(x0 - half, 0.0, 1.0), np.clip(x0 + half, 0.0, 1.0)
        y0 = forward(layers, acts, x0[None])[0]
        ref = int(np.argmax(y0)) if rng.random() < 0.9 else int(rng.integers(0, n_out))
        eye = np.eye(n_out)
        clauses = [((eye[j] - eye[ref])[None], np.zeros(1)) for j in range(n_out) if j != ref]
        return Prop("robust", [(lo, hi)], clauses, ref, [f"eps={eps:.2g}"])
    n_boxes = 2 if rng.random() < 0.25 else 1
    boxes, styles = [], []
    for _ in range(n_boxes):
        lo, hi, style = _box_general(rng, n, free, net.family, net.kind)
        boxes.append((lo, hi))
        styles.append(style)
    # rows: thresholds around the value at a sample point of the first box
    lo, hi = boxes[0]
    pts = lo + (hi - lo) * rng.random((16, n))
    ys = forward(layers, acts, pts)
    clauses = []
    for _ in range(int(rng.integers(1, 4))):
        rows = []
        for _ in range(int(rng.integers(1, 4))):
            a = np.zeros(n_out)
            t = rng.random()
            if t < 0.3:
                a[int(rng.integers(0, n_out))] = rng.choice([-1.0, 1.0])
            elif t < 0.6:
                i, j = rng.choice(n_out, 2, replace=False)
                a[i], a[j] = 1.0, -1.0
            else:
                idx = rng.choice(n_out, min(n_out, int(rng.integers(2, 4))), replace=False)
                a[idx] = rng.normal(0.0, 1.0, len(idx))
            vals = ys @ a
            spread = float(vals.max() - vals.min()) + 1e-3
            rows.append((a, float(vals.mean() + rng.normal(0.0, 1.0) * spread)))
        clauses.append((np.array([r[0] for r in rows]), np.array([r[1] for r in rows])))
    return Prop("general", boxes, clauses, None, styles)
