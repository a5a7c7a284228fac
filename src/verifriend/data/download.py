"""Explicit (opt-in) download of the full data sets from their usual mirrors."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from verifriend.data.idx import IDX_FILES
from verifriend.errors import UserError

IDX_MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _fetch_one(url: str, target: Path) -> None:
    fd, name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    tmp = Path(name)
    try:
        # write then rename, so an interrupted download never looks like a finished file
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as r:
            shutil.copyfileobj(r, f)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(urls: tuple[str, ...], target: Path) -> None:
    errors = []
    for url in urls:
        try:
            _fetch_one(url, target)
            return
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{url}: {e}")
    raise UserError(f"Download of {target.name} failed ({'; '.join(errors)}).")


def download(name: str, base: Path) -> Path:
    """Download data set ``name`` into ``base/<name>/`` and return that directory."""
    target = base / name
    target.mkdir(parents=True, exist_ok=True)
    if name in IDX_MIRRORS:
        for stem in IDX_FILES.values():
            if not (target / f"{stem}.gz").is_file():
                _fetch(tuple(m + stem + ".gz" for m in IDX_MIRRORS[name]), target / f"{stem}.gz")
        return target
    if name == "cifar10":
        tgz = target / "cifar-10-python.tar.gz"
        if not tgz.is_file():
            _fetch((CIFAR_URL,), tgz)
        with tarfile.open(tgz) as tar:
            tar.extractall(target, filter="data")  # "data" refuses links and paths outside
        return target
    raise UserError(f"No download is known for data set {name!r}.")
