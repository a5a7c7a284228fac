"""The output layer's rewrite with label-margin rows, an option beside the VNN paper (which
leaves the output layer as it is).

A fully connected output layer ``z = a W^T + b`` is rewritten to the weights of least L1 norm
that keep, for every validation sample ``s`` with label ``c`` (the original network's
prediction) and every other class ``j``, the margin ``z'_c - z'_j`` at least
``(1 - eps)`` times the original one (and above a small positive floor): every validation
label is kept, with margins no smaller than the original's when ``eps = 0``. The classes share
the rows, so this is one LP over the whole layer (``2 k (n + 1)`` variables for ``k`` classes
and ``n`` inputs, ``samples x (k - 1)`` rows), solved by HiGHS in float64.
"""

from __future__ import annotations

import numpy as np

from verifriend.sparsify.layers import Dense


def output_lp(a: np.ndarray, layer: Dense, z: np.ndarray, eps: float, floor: float = 1e-6
              ) -> Dense | None:
    """The sparsest output layer keeping the margins of ``z`` (original logits, samples x
    classes) on inputs ``a`` (samples x n) within ``eps``; None if HiGHS finds no optimum."""
    import highspy

    from verifriend.bounds.ops.milp_rows import quiet_highs

    m, n = a.shape
    k = layer.W.shape[0]
    label = z.argmax(1)
    s_idx, j_idx = np.nonzero(np.arange(k)[None, :] != label[:, None])  # one row per (s, j)
    c_idx = label[s_idx]
    margin = z[s_idx, c_idx] - z[s_idx, j_idx]
    lower = np.maximum((1 - eps) * margin, np.minimum(floor, margin))
    ab = np.hstack([a, np.ones((m, 1))])[s_idx]  # (rows, n + 1)
    half = k * (n + 1)  # columns: [positive parts of all classes, negative parts]
    cols = np.arange(n + 1)[None, :]
    index = np.hstack([c_idx[:, None] * (n + 1) + cols, j_idx[:, None] * (n + 1) + cols])
    index = np.hstack([index, index + half])
    value = np.hstack([ab, -ab, -ab, ab])
    order = np.argsort(index, axis=1, kind="stable")
    index, value = np.take_along_axis(index, order, 1), np.take_along_axis(value, order, 1)
    keep = value != 0
    starts = np.concatenate([[0], np.cumsum(keep.sum(1))[:-1]]).astype(np.int32)
    h = quiet_highs()
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.addVars(2 * half, np.zeros(2 * half), np.full(2 * half, highspy.kHighsInf))
    h.changeColsCost(2 * half, np.arange(2 * half, dtype=np.int32), np.ones(2 * half))
    h.addRows(len(lower), lower, np.full(len(lower), highspy.kHighsInf), int(keep.sum()),
              starts, index[keep].astype(np.int32), value[keep])
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    x = np.asarray(h.getSolution().col_value)
    wb = (x[:half] - x[half:]).reshape(k, n + 1)
    return Dense(wb[:, :n].copy(), wb[:, n].copy())
