"""Output paths that cannot lose data: checked before any work, written atomically, cleaned up.

Every job that writes files goes through this module:

- :func:`check_out_dir` / :func:`check_out_file` refuse, with one sentence (``UserError``),
  an output directory that is a file or lies below one, an output file that is a directory,
  and a place where nothing can be created. Writability is *probed* (a temporary file is
  created and removed in the nearest existing folder): ``os.access`` says yes to root even
  where writing fails.
- :func:`write_text_atomic`, :func:`write_bytes_atomic`, :func:`write_json_atomic`,
  :func:`save_torch_atomic` and :func:`atomic_write` write a temporary file in the target's
  folder, fsync it and rename it over the target, so a reader sees the old file or the new
  one, never half of one. Every file gets mode ``0o666 & ~umask``, as ``open()`` gives.
- :func:`output_dir` creates a job's output directory; when the job fails (an exception or
  Ctrl-C), the folders it created and left empty are removed again. Files already there,
  and files a rerun resumes from (checkpoints, campaign logs), are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from verifriend.errors import UserError

PathLike = str | os.PathLike


def file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process umask."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # no other way to read it; restored at once
    os.umask(old)
    return 0o666 & ~old


def _label(what: str, path: PathLike) -> str:
    return f"{what} {os.fspath(path)}" if what else os.fspath(path)


def _why(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _nearest_existing(path: Path, what: str, target: Path) -> Path:
    """The nearest existing ancestor of ``path`` (itself included); it must be a directory."""
    cur = path
    while not os.path.lexists(cur):
        if cur.parent == cur:
            break
        cur = cur.parent
    if not cur.is_dir():
        raise UserError(f"{_label(what, target)} cannot be created: {cur} is a file, not a "
                        "directory.")
    return cur


def _probe(folder: Path, what: str, target: Path) -> None:
    """Create and remove a file in ``folder``: the only test of writability that root passes
    only where it can really write."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".verifriend-probe-", dir=folder)
    except OSError as e:
        raise UserError(f"{_label(what, target)} cannot be written: nothing can be created in "
                        f"{folder} ({_why(e)}).") from None
    os.close(fd)
    os.unlink(tmp)


def check_out_dir(path: PathLike, what: str = "--out", *, files: Iterable[str] = ()) -> Path:
    """``path`` as a Path if a job can write its files there; else a one-sentence UserError.

    Refused: an existing file (or any other non-directory), a path below a file, a place
    where nothing can be created. ``files`` names files the job will write inside: none of
    them may be an existing directory.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise UserError(f"{_label(what, path)} is a file, not a directory (choose another "
                        "output directory).")
    folder = _nearest_existing(path, what, path)
    _probe(folder, what, path)
    for name in files:
        inner = path / name
        if inner.is_dir():
            raise UserError(f"{inner} is a directory where {_label(what, path)} needs to write a "
                            "file (move it away or choose another output directory).")
    return path


def check_out_file(path: PathLike, what: str = "--out", *, append: bool = False) -> Path:
    """``path`` as a Path if a job can (re)write it; else a one-sentence UserError.

    Refused: a directory, a path whose folder is (below) a file or cannot be written, and,
    with ``append``, an existing file that cannot be opened for appending.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{_label(what, path)} is a directory, not a file (give a file name).")
    if os.path.lexists(path) and not path.exists():
        raise UserError(f"{_label(what, path)} is a broken symbolic link.")
    folder = _nearest_existing(path.parent, what, path)
    _probe(folder, what, path)
    if append and path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        except OSError as e:
            raise UserError(f"{_label(what, path)} cannot be written ({_why(e)}).") from None
    return path


def remove_file(path: PathLike, what: str = "--out") -> None:
    """Delete ``path`` if it exists (a stale result must not outlive a failed run)."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"the old {_label(what, path)} cannot be removed ({_why(e)}).") from None


# --- directories a job creates ----------------------------------------------------------------

def make_dirs(path: PathLike) -> list[Path]:
    """``mkdir -p path``; returns the directories created, outermost first."""
    path = Path(path)
    missing = []
    cur = path
    while not os.path.lexists(cur) and cur.parent != cur:
        missing.append(cur)
        cur = cur.parent
    made = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue  # made by someone else meanwhile: not ours to remove
            made.append(d)
    except BaseException:
        remove_empty_dirs(made)
        raise
    return made


def remove_empty_dirs(made: list[Path]) -> None:
    """Remove the directories in ``made`` (outermost first, as :func:`make_dirs` returns them)
    that hold nothing but empty folders; keep any with a file in it."""
    for d in reversed(made):
        for root, dirs, _ in os.walk(d, topdown=False):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(root, name))
        with contextlib.suppress(OSError):
            os.rmdir(d)


@contextlib.contextmanager
def output_dir(path: PathLike, what: str = "--out", *, files: Iterable[str] = (),
               check: bool = True) -> Iterator[Path]:
    """Create a job's output directory for the ``with`` block (checked first unless ``check``
    is False). If the block fails, the directories created here and left empty are removed
    (with any empty folders inside them); a resumed run's files and checkpoints stay."""
    path = check_out_dir(path, what, files=files) if check else Path(path)
    made = make_dirs(path)
    try:
        yield path
    except BaseException:
        remove_empty_dirs(made)
        raise


# --- atomic writes ----------------------------------------------------------------------------

def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder, then fsync it, give it
    mode ``0o666 & ~umask`` and rename it over ``path``. Missing folders are created (and
    removed again if the write fails). On failure ``path`` is untouched and ``tmp`` is gone."""
    path = Path(path)
    made = make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, file_mode())
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except BaseException:
        remove_empty_dirs(made)
        raise
    _fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: PathLike, data, *, indent: int | None = 2,
                      default: Callable | None = None) -> Path:
    """Write ``data`` as JSON (and a final newline) atomically. A value JSON cannot hold
    raises before anything is written."""
    return write_text_atomic(path, json.dumps(data, indent=indent, default=default) + "\n")


def save_torch_atomic(path: PathLike, obj) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
