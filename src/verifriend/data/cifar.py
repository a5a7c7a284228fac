"""CIFAR-10 "python version" batches: pickled dicts with b'data' (N,3072 uint8) and b'labels'."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from verifriend.errors import UserError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"

# The batches are pickles; only what a dict of numpy arrays and lists needs may be rebuilt,
# so a tampered file cannot run code.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 spell bytes this way
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[11:]  # numpy 2 warns on the old path of old pickles
        return super().find_class(module, name)


def find_batches(directory: Path) -> Path | None:
    """The directory holding all six batches: ``directory/cifar-10-batches-py`` or ``directory``."""
    for d in (directory / "cifar-10-batches-py", directory):
        if all((d / n).is_file() for n in (*TRAIN_BATCHES, TEST_BATCH)):
            return d
    return None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as uint8 images (N,3,32,32) and int64 labels."""
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({e}).") from None
    if not isinstance(d, dict):
        raise UserError(f"{path} is not a CIFAR-10 python batch (not a dict).")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise UserError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch.")
    data, labels = np.asarray(data), np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path} holds data of shape {data.shape} {data.dtype}; expected (N, 3072) "
                        "uint8.")
    if labels.shape != (len(data),) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
        raise UserError(f"{path} holds {labels.shape} labels for {len(data)} images, or labels "
                        "outside 0..9.")
    # Each row is the red plane, then green, then blue, each 32x32 row-major: already CHW.
    return data.reshape(-1, 3, 32, 32), labels


def load_batches(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All five training batches concatenated, and the test batch."""
    parts = [read_batch(directory / n) for n in TRAIN_BATCHES]
    x_test, y_test = read_batch(directory / TEST_BATCH)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            x_test, y_test)
