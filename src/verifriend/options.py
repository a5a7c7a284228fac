"""Typed options: settings dataclasses whose fields carry their help and their limits.

A field's ``metadata`` holds a ``help`` sentence and optionally ``min`` / ``max`` (with
``min_open`` / ``max_open`` for strict limits) and ``choices``, e.g.
``batch: int = field(default=256, metadata={"help": "...", "min": 1})``. :func:`check_fields` checks an instance against its annotations and those
limits (a dataclass calls it from ``__post_init__``) and raises :class:`OptionError`, one
sentence naming the field. :func:`from_mapping` builds a (nested) dataclass from plain data
such as a parsed YAML file, naming any bad key by its dotted path (``bab.batch``);
:func:`to_mapping` is its inverse. Nothing here reads or writes files.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from verifriend.errors import UserError


class OptionError(UserError):
    """A bad option value: ``key`` (dotted for nested options) and what is wrong with it."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key} {problem}.")

    def nested(self, prefix: str) -> OptionError:
        """The same error with ``prefix.`` in front of its key."""
        return OptionError(f"{prefix}.{self.key}", self.problem)


class UnknownOption(UserError):
    """A key that names no option; ``suggestion`` is the closest option's dotted key, if any."""

    def __init__(self, key: str, suggestion: str | None):
        self.key, self.suggestion = key, suggestion
        hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
        super().__init__(f"unknown option '{key}'{hint}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_args(tp: Any) -> tuple:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _kind(tp: Any) -> tuple[str, Any] | None:
    """(what a value must be, a check) for the plain types options use; None: not checked."""
    if tp is bool:
        return "true or false", lambda v: isinstance(v, bool)
    if tp is int:
        return "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return "a number", lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v))
    if tp is str:
        return "a string", lambda v: isinstance(v, str)
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__}", lambda v: isinstance(v, tp)
    return None


def _range_text(meta: Mapping) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return (f"in {'(' if meta.get('min_open') else '['}{lo:g}, {hi:g}"
                f"{')' if meta.get('max_open') else ']'}")
    if lo is not None:
        return f"{'>' if meta.get('min_open') else '>='} {lo:g}"
    return f"{'<' if meta.get('max_open') else '<='} {hi:g}"


def _in_range(v: float, meta: Mapping) -> bool:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and not (v > lo if meta.get("min_open") else v >= lo):
        return False
    return hi is None or (v < hi if meta.get("max_open") else v <= hi)


def check_value(name: str, value: Any, tp: Any, meta: Mapping) -> None:
    """Check one field's value against its annotation ``tp`` and limits ``meta``."""
    args = _union_args(tp)
    if value is None and type(None) in args:
        return
    kinds = [k for k in (_kind(a) for a in args if a is not type(None)) if k is not None]
    if kinds and not any(ok(value) for _, ok in kinds):
        what = " or ".join(w for w, _ in kinds) + (" or null" if type(None) in args else "")
        raise OptionError(name, f"must be {what}, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise OptionError(name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
    if (meta.get("min") is not None or meta.get("max") is not None) and not _in_range(value, meta):
        word = {"an integer": "an integer ", "a number": ""}.get(kinds[0][0] if kinds else "", "")
        raise OptionError(name, f"must be {word}{_range_text(meta)}, got {value!r}")


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` (types, then limits); raise
    :class:`OptionError` naming the first bad one."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        check_value(f.name, getattr(obj, f.name), hints[f.name], f.metadata)


def help_of(cls: type, name: str) -> str:
    """The help sentence of field ``name`` of dataclass ``cls`` ("" when it has none)."""
    return next((f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name),
                "")


def nested_type(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls`` when it holds a nested dataclass."""
    tp = _hints(cls)[name]
    return tp if dataclasses.is_dataclass(tp) else None


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every option of ``cls`` by its dotted key, nested dataclasses expanded."""
    keys = []
    for f in dataclasses.fields(cls):
        sub = nested_type(cls, f.name)
        keys += dotted_keys(sub, f"{prefix}{f.name}.") if sub else [prefix + f.name]
    return keys


def _coerce(value: Any, tp: Any) -> Any:
    """YAML reads ``1e-3`` (no dot) as a string: accept numeric strings for float fields."""
    if isinstance(value, str) and float in _union_args(tp):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def from_mapping(cls: type, data: Any, *, base: Any = None, prefix: str = "",
                 root: type | None = None) -> Any:
    """An instance of dataclass ``cls`` from ``data`` (a mapping, nested for nested
    dataclasses), over ``base`` (default: the defaults). Raises :class:`UnknownOption` for a
    key that names no option and :class:`OptionError` for a bad value, both with the key's
    dotted path."""
    root = root or cls
    if not isinstance(data, Mapping):
        raise OptionError(prefix.rstrip(".") or "the options", "must be a mapping of options")
    base = base if base is not None else cls()
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            full = f"{prefix}{key}"
            close = difflib.get_close_matches(full, dotted_keys(root), n=1, cutoff=0.6)
            raise UnknownOption(full, close[0] if close else None)
    values = {}
    for key, value in data.items():
        sub = nested_type(cls, key)
        if sub is not None:
            values[key] = from_mapping(sub, value, base=getattr(base, key),
                                       prefix=f"{prefix}{key}.", root=root)
        else:
            values[key] = _coerce(value, _hints(cls)[key])
            check_value(prefix + key, values[key], _hints(cls)[key],
                        next(f.metadata for f in dataclasses.fields(cls) if f.name == key))
    try:
        return dataclasses.replace(base, **values)
    except OptionError as e:  # a limit that spans fields, checked by __post_init__
        raise e.nested(prefix.rstrip(".")) if prefix else e from None


def to_mapping(obj: Any) -> dict:
    """The plain-data form of a (nested) options dataclass, as :func:`from_mapping` reads it."""
    return {f.name: to_mapping(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else v
            for f in dataclasses.fields(obj)}
