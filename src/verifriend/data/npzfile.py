"""Data sets stored as one ``.npz`` with ``x_train, y_train, x_test, y_test``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from verifriend.errors import UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """Images as (N,C,H,W): NHW gets one channel, NHWC is transposed, NCHW is kept."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
    raise UserError(f"{where} has image shape {x.shape}; expected NHW, NHWC or NCHW with 1 or 3 "
                    "channels.")


def to_unit_float(x: np.ndarray, where: str) -> np.ndarray:
    """Pixels as float32 in [0,1]: integers 0..255 are divided by 255, floats must be in [0,1]."""
    if x.size == 0:
        return x.astype(np.float32)
    lo, hi = x.min(), x.max()
    if np.issubdtype(x.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise UserError(f"{where} has integer pixels in {lo}..{hi}; expected 0..255.")
        out = x.astype(np.float32)
        out /= 255
        return out
    if np.issubdtype(x.dtype, np.floating):
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= 1):
            raise UserError(f"{where} has float pixels in [{lo:g}, {hi:g}]; expected [0, 1] "
                            "(or uint8 0..255).")
        return x.astype(np.float32)
    raise UserError(f"{where} has pixels of type {x.dtype}; expected uint8 or float.")


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read and check a data set ``.npz``: float32 NCHW images in [0,1] and int64 labels.

    Optional entries ``classes``, ``mean`` and ``std`` are passed through when present.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in KEYS if k not in f.files]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)}; a data set .npz needs "
                                f"{', '.join(KEYS)}.")
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{path} is not a readable .npz file ({e}).") from None
    out = {k: v for k, v in arrays.items() if k not in KEYS}
    for split in ("train", "test"):
        where = f"{path} ({'x_' + split})"
        x = to_unit_float(np.ascontiguousarray(to_nchw(arrays["x_" + split], where)), where)
        y = arrays["y_" + split]
        if y.ndim == 2 and y.shape[1] == 1:  # Keras-style (N,1) labels
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{path} has y_{split} of shape {y.shape} {y.dtype}; expected {len(x)} "
                            "integer labels.")
        if len(y) and y.min() < 0:
            raise UserError(f"{path} has negative labels in y_{split}.")
        out["x_" + split], out["y_" + split] = x, y.astype(np.int64)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise UserError(f"{path} has train images {out['x_train'].shape[1:]} but test images "
                        f"{out['x_test'].shape[1:]}.")
    return out
