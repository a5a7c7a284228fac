"""The sparse rows of a MILP (HiGHS), collected per node and handed to HiGHS in bulk.

The operators' :meth:`~verifriend.bounds.ops.base.Node.milp` rules write into a
:class:`MilpRows`; :mod:`verifriend.verify.milp` builds and solves the model.
"""

from __future__ import annotations

import math
import os
import sys

import highspy
import numpy as np
import torch
from torch import Tensor

INF = highspy.kHighsInf
_banner_shown = False


def quiet_highs() -> highspy.Highs:
    """A HiGHS instance that prints nothing. HiGHS writes its banner to the process's stdout
    when the first instance is made, before any option can be set, so that one is made with
    file descriptor 1 pointed at /dev/null (once per process)."""
    global _banner_shown
    if _banner_shown:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _banner_shown = True
    h.setOptionValue("output_flag", False)
    return h


def flat(t: Tensor, d: int) -> np.ndarray:
    """Domain ``d`` of ``t`` as a flat float64 numpy vector."""
    return t[d].detach().cpu().double().reshape(-1).numpy()


class MilpRows:
    """Columns and sparse rows collected as numpy blocks, handed to HiGHS in bulk."""

    def __init__(self):
        self.n_cols = 0
        self.col_lo: list[np.ndarray] = []
        self.col_hi: list[np.ndarray] = []
        self.binaries: list[np.ndarray] = []
        self.n_rows = 0
        self.row_lo: list[np.ndarray] = []
        self.row_hi: list[np.ndarray] = []
        self.tri: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def cols(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        idx = np.arange(self.n_cols, self.n_cols + lo.size)
        self.n_cols += lo.size
        self.col_lo.append(lo.astype(np.float64))
        self.col_hi.append(hi.astype(np.float64))
        return idx

    def rows(self, lo, hi, *terms: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Rows ``lo <= sum of terms <= hi``; a term is (local row, column, coefficient)."""
        k = np.size(lo)
        for r, c, v in terms:
            self.tri.append((r + self.n_rows, c, v.astype(np.float64)))
        self.row_lo.append(np.broadcast_to(np.asarray(lo, np.float64), (k,)))
        self.row_hi.append(np.broadcast_to(np.asarray(hi, np.float64), (k,)))
        self.n_rows += k

    def build(self, bound_fix: list) -> tuple[highspy.Highs, int]:
        lo, hi = np.concatenate(self.col_lo), np.concatenate(self.col_hi)
        for cols, new_lo, new_hi in bound_fix:
            lo[cols] = np.maximum(lo[cols], new_lo)
            hi[cols] = np.minimum(hi[cols], new_hi)
        h = quiet_highs()
        # exact optimum: no relative gap; HiGHS's absolute default (1e-6) is looser
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", 1e-9)
        h.addVars(self.n_cols, lo, hi)
        if self.tri:
            r = np.concatenate([t[0] for t in self.tri])
            c = np.concatenate([t[1] for t in self.tri])
            v = np.concatenate([t[2] for t in self.tri])
            # merge repeated (row, column) entries (e.g. x + x), HiGHS rejects them
            key, inv = np.unique(r * self.n_cols + c, return_inverse=True)
            v = np.bincount(inv.ravel(), weights=v, minlength=key.size)
            r, c = key // self.n_cols, key % self.n_cols
            starts = np.searchsorted(r, np.arange(self.n_rows)).astype(np.int32)
            h.addRows(
                self.n_rows,
                np.concatenate(self.row_lo),
                np.concatenate(self.row_hi),
                key.size,
                starts,
                c.astype(np.int32),
                v,
            )
        nbin = 0
        if self.binaries:
            idx = np.concatenate(self.binaries).astype(np.int32)
            nbin = idx.size
            if nbin:
                kinds = np.full(nbin, int(highspy.HighsVarType.kInteger), np.uint8)
                h.changeColsIntegrality(nbin, idx, kinds)
        return h, nbin


def dense_map(node, in_shape) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with ``node(v) = M v + b`` on flat vectors: the node applied to a basis."""
    n_in = math.prod(in_shape)
    with torch.no_grad():
        zero = node.forward(torch.zeros(1, *in_shape, dtype=torch.float64))
        basis = torch.eye(n_in, dtype=torch.float64).view(n_in, *in_shape)
        M = (node.forward(basis) - zero).reshape(n_in, -1).T
    return M.numpy(), zero.reshape(-1).numpy()


def affine_rows(rows: MilpRows, out: np.ndarray, src: np.ndarray, M: np.ndarray, b) -> None:
    """Rows ``out - M src = b`` for a dense ``M`` (zeros skipped)."""
    i, j = np.nonzero(M)
    k = out.size
    rows.rows(b, b, (np.arange(k), out, np.ones(k)), (i, src[j], -M[i, j]))
