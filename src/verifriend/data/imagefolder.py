"""Image-folder archives (``train/<class>/*.jpg|png``, ``test/<class>/...`` in a tar file).

Decoding tens of thousands of small images takes seconds, so the decoded arrays are cached as an
``.npz`` next to the archive when that directory is writable, else in ``$VERIFRIEND_CACHE`` (or
``~/.cache/verifriend``). The cache records the archive's size and mtime and is rebuilt when
either changes.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from verifriend.data.locate import cache_candidates, writable
from verifriend.errors import UserError

IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
CACHE_SUFFIX = ".cache.npz"
_CACHE_VERSION = 2  # 2: splits shuffled (see decode_archive)
_SPLITS = ("train", "test")
SHUFFLE_SEED = 0


def _progress() -> Progress:
    # stderr, so that commands printing JSON on stdout stay parseable
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.percentage:>3.0f}%  {task.fields[images]} images"), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    )


def decode_archive(archive: Path, mode: str = "RGB") -> dict[str, np.ndarray]:
    """Decode every ``<split>/<class>/<image>`` of a tar archive into uint8 NHWC arrays.

    Classes are the folder names sorted alphabetically (label = position). Each split is
    sorted by (class, file name), so the result does not depend on the archive's member order,
    then permuted with a fixed seed: class-ordered folders would otherwise make any prefix of
    a split (``--limit``, ``--test-limit``) hold only the first few classes.
    """
    found: dict[str, list[tuple[str, str, np.ndarray]]] = {s: [] for s in _SPLITS}
    formats: set[str] = set()
    total = archive.stat().st_size
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar, \
                _progress() as progress:
            task = progress.add_task(f"decoding {archive.name}", total=total, images=0)
            count = 0
            for member in tar:
                parts = PurePosixPath(member.name).parts
                fmt = IMAGE_FORMATS.get(PurePosixPath(member.name).suffix.lower())
                if not member.isfile() or fmt is None or len(parts) < 3 or parts[-3] not in _SPLITS:
                    continue
                data = tar.extractfile(member).read()
                try:
                    with Image.open(io.BytesIO(data)) as img:
                        pixels = np.asarray(img.convert(mode))
                except (OSError, UnidentifiedImageError, ValueError) as e:
                    raise UserError(f"{archive}: {member.name} is not a readable image ({e}).") \
                        from None
                found[parts[-3]].append((parts[-2], parts[-1], pixels))
                formats.add(fmt)
                count += 1
                if count % 500 == 0:
                    progress.update(task, completed=raw.tell(), images=count)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise UserError(f"{archive} is not a readable tar archive ({e}).") from None

    for split in _SPLITS:
        if not found[split]:
            raise UserError(f"{archive} has no images under {split}/<class>/.")
    classes = sorted({c for s in _SPLITS for c, _, _ in found[s]})
    label = {c: i for i, c in enumerate(classes)}
    out: dict[str, np.ndarray] = {}
    for split in _SPLITS:
        items = sorted(found[split], key=lambda t: (t[0], t[1]))
        items = [items[i] for i in np.random.default_rng(SHUFFLE_SEED).permutation(len(items))]
        shapes = {p.shape for _, _, p in items}
        if len(shapes) != 1:
            raise UserError(f"{archive} mixes image sizes {sorted(shapes)} in {split}/; all images "
                            "must have one size.")
        out["x_" + split] = np.stack([p for _, _, p in items])
        out["y_" + split] = np.array([label[c] for c, _, _ in items], dtype=np.int64)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise UserError(f"{archive} has train images {out['x_train'].shape[1:]} but test images "
                        f"{out['x_test'].shape[1:]}.")
    out["classes"] = np.array(classes)
    out["format"] = np.array("+".join(sorted(formats)))
    return out


def _cache_key(archive: Path, mode: str) -> str:
    st = archive.stat()
    return f"v{_CACHE_VERSION}:{mode}:{st.st_size}:{st.st_mtime_ns}"


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "key" not in f.files or str(f["key"]) != key:
                return None
            return {k: f[k] for k in f.files if k != "key"}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
        return None  # a broken cache is simply rebuilt


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> bool:
    if not writable(path.parent):
        return False
    tmp: Path | None = None
    try:
        # write then rename, so a concurrent or interrupted run never sees half a file
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(f, key=np.array(key), **arrays)
        tmp.chmod(0o644)  # temp files are private; the cache holds only public data
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        return False


def load_image_archive(archive: Path, mode: str = "RGB") -> tuple[dict[str, np.ndarray], Path | None]:
    """Decoded arrays of ``archive`` (see :func:`decode_archive`), through the ``.npz`` cache.

    Returns the arrays and the cache file used or written (None if no place was writable).
    """
    key = _cache_key(archive, mode)
    candidates = cache_candidates(archive, CACHE_SUFFIX)
    for c in candidates:
        if c.is_file() and (arrays := _read_cache(c, key)) is not None:
            return arrays, c
    arrays = decode_archive(archive, mode)
    for c in candidates:
        if _write_cache(c, key, arrays):
            return arrays, c
    return arrays, None
