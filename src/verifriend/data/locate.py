"""Where data sets are looked for, and where decoded caches go.

Search order: the explicit ``data_dir`` (the CLI's ``--data-dir``), ``$VERIFRIEND_DATA``, then
``shared/datasets`` beside the repository (found by walking up to a ``pyproject.toml``).
Tests point the search elsewhere by monkeypatching :func:`shared_datasets_dirs`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_DATA = "VERIFRIEND_DATA"
ENV_CACHE = "VERIFRIEND_CACHE"


@dataclass
class SearchPlan:
    """Directories to look in, in order, and a human description of each source for errors."""

    dirs: list[Path] = field(default_factory=list)
    described: list[str] = field(default_factory=list)

    def add(self, path: Path) -> None:
        if path not in self.dirs:
            self.dirs.append(path)

    def sentence(self) -> str:
        return ", ".join(self.described)


def repo_roots() -> list[Path]:
    """Directories holding a ``pyproject.toml`` above this source file and above the cwd."""
    roots: list[Path] = []
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "pyproject.toml").is_file():
                if d not in roots:
                    roots.append(d)
                break
    return roots


def shared_datasets_dirs() -> list[Path]:
    """Existing ``<repo_root>/../shared/datasets`` directories (the project's shared data)."""
    out: list[Path] = []
    for root in repo_roots():
        d = root.parent / "shared" / "datasets"
        if d.is_dir() and d not in out:
            out.append(d)
    return out


def _env_dirs() -> list[Path]:
    value = os.environ.get(ENV_DATA, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


def search_dirs(
    data_dir: str | os.PathLike | None,
    subdirs: Sequence[str] = (),
    extra: Sequence[Path] = (),
    include_base: bool = False,
) -> SearchPlan:
    """Directories where a data set stored under one of ``subdirs`` may live, in search order.

    The explicit ``data_dir`` is also searched itself (files directly in it); the other bases
    only through their sub-directories unless ``include_base`` (for uniquely named files).
    """
    plan = SearchPlan()

    def add_base(base: Path, with_base: bool) -> None:
        for sub in subdirs:
            plan.add(base / sub)
        if with_base or not subdirs:
            plan.add(base)

    if data_dir is None:
        plan.described.append("--data-dir (not given)")
    else:
        base = Path(data_dir).expanduser()
        add_base(base, True)
        plan.described.append(f"--data-dir {base}")

    env = _env_dirs()
    if not env:
        plan.described.append(f"${ENV_DATA} (not set)")
    for base in env:
        add_base(base, include_base)
        plan.described.append(f"${ENV_DATA} {base}")

    shared = shared_datasets_dirs()
    if not shared:
        plan.described.append("../shared/datasets (not found)")
    for base in shared:
        add_base(base, include_base)
        plan.described.append(str(base / subdirs[0]) if subdirs and not include_base else str(base))

    for d in extra:
        plan.add(d)
        plan.described.append(str(d))
    return plan


def writable(d: Path) -> bool:
    """Whether files may be created in ``d`` (creating it if needed).

    A directory without any write bit counts as read-only even for root, who ``os.access``
    would let write anywhere: shared data directories are made read-only on purpose.
    """
    try:
        d.mkdir(parents=True, exist_ok=True)
        mode = d.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(d, os.W_OK | os.X_OK)


def cache_dir() -> Path:
    """``$VERIFRIEND_CACHE`` or ``~/.cache/verifriend``."""
    value = os.environ.get(ENV_CACHE)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "verifriend"


def cache_candidates(source: Path, suffix: str) -> list[Path]:
    """Cache files for ``source``: next to it first, else in :func:`cache_dir` (name keyed by path)."""
    stem = source.name.split(".")[0]
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
    return [source.with_name(f"{stem}{suffix}"), cache_dir() / f"{stem}-{digest}{suffix}"]


def download_base(data_dir: str | os.PathLike | None) -> Path:
    """First writable base directory for downloads: ``data_dir``, ``$VERIFRIEND_DATA``, shared, cache."""
    bases = [Path(data_dir).expanduser()] if data_dir is not None else []
    bases += _env_dirs() + shared_datasets_dirs() + [cache_dir() / "datasets"]
    for b in bases:
        if writable(b):
            return b
    return bases[-1]
