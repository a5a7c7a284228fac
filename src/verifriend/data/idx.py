"""IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or not."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from verifriend.errors import UserError

# The four files of a set, by role; each may carry a ".gz" suffix.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # gzip magic; uncompressed files are read as they are
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path} is not a valid gzip file ({e}).") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read one unsigned-byte IDX file into a uint8 array of its declared shape."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{path} is not an IDX file (bad magic number).")
    if raw[2] != _UBYTE:
        raise UserError(f"{path} holds IDX type {raw[2]:#04x}; only unsigned bytes (0x08) are read.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise UserError(f"{path} has a truncated IDX header.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise UserError(
            f"{path} declares shape {shape} ({size} bytes) but holds {len(raw) - header} data bytes."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (``.gz`` preferred), or None unless all are there."""
    found: dict[str, Path] = {}
    for role, stem in IDX_FILES.items():
        for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                     stem.replace("-idx", ".idx")):
            if (directory / name).is_file():
                found[role] = directory / name
                break
        else:
            return None
    return found


def load_idx_set(
    files: dict[str, Path], image_hw: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read and check a set: uint8 images (N,H,W) and int64 labels for train and test."""
    out = []
    for split in ("train", "test"):
        img_path, lab_path = files[f"{split}_images"], files[f"{split}_labels"]
        x, y = read_idx(img_path), read_idx(lab_path)
        if x.ndim != 3 or x.shape[1:] != image_hw:
            raise UserError(f"{img_path} holds shape {x.shape}; expected (N, {image_hw[0]}, "
                            f"{image_hw[1]}) images.")
        if y.ndim != 1 or len(y) != len(x):
            raise UserError(f"{lab_path} holds {y.shape} labels for {len(x)} images in {img_path}.")
        if len(y) and int(y.max()) >= num_classes:
            raise UserError(f"{lab_path} has label {int(y.max())}; expected 0..{num_classes - 1}.")
        out += [x, y.astype(np.int64)]
    return tuple(out)  # type: ignore[return-value]
