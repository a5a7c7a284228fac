"""Options files: YAML in and out for settings dataclasses (:mod:`verifriend.options`).

`verifriend config verifier` prints :class:`~verifriend.verify.verifier.VerifierConfig`'s
defaults as YAML with a comment per option (:func:`options_yaml`); `verifriend verify` and
`verifriend vnncomp` read such a file with ``--config`` and take ``--set KEY=VALUE``
overrides on top of it (:func:`verifier_config`). A bad key or value is one sentence that
names it by its dotted path.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import yaml

from verifriend.errors import UserError
from verifriend.options import OptionError, UnknownOption, from_mapping, help_of

VERIFIER_HEADER = """\
# verifriend verifier options, with their defaults: the stages of `verifriend verify` and
# `verifriend vnncomp`. Edit and pass this file with --config FILE.yaml; --set KEY=VALUE on
# the command line overrides one option (a dotted KEY for a section: --set bab.branching=fsb).
"""


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _lines(obj: Any, indent: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        comment = textwrap.wrap(help_of(type(obj), f.name), 88 - len(indent) - 2)
        out += [f"{indent}# {c}" for c in comment]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.append(f"{indent}{f.name}:")
            out += _lines(value, indent + "  ")
        else:
            out.append(f"{indent}{f.name}: {_scalar(value)}")
    return out


def options_yaml(obj: Any, header: str = "") -> str:
    """``obj`` (a settings dataclass) as YAML: one ``key: value`` per option, each under a
    comment with its help, nested dataclasses as sections."""
    return header + "\n" + "\n".join(_lines(obj)) + "\n"


def read_yaml_file(path: str | Path, what: str) -> Any:
    """The parsed YAML file ``path`` ("" or only comments: an empty mapping); an unreadable or
    malformed file is a one-sentence UserError."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e.__class__.__name__
        raise UserError(f"cannot read the {what} file {path} ({why}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "a syntax error"
        raise UserError(f"{path}: not valid YAML ({problem}{where}).") from None
    return {} if data is None else data


def build_options(cls: type, data: Any, source: str, kind: str, base: Any = None) -> Any:
    """``cls`` from a parsed mapping over ``base``; a bad key or value is a UserError saying
    ``source`` (a file name, or the flag) and the option's dotted key."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: the {kind}s must be a mapping of option names to values, "
                        f"got {type(data).__name__}.")
    try:
        return from_mapping(cls, data, base=base)
    except UnknownOption as e:
        hint = f" (did you mean '{e.suggestion}'?)" if e.suggestion else ""
        raise UserError(f"{source}: unknown {kind} '{e.key}'{hint}") from None
    except OptionError as e:
        raise UserError(f"{source}: {kind} '{e.key}' {e.problem}.") from None


def _assignment(text: str) -> dict:
    """``{"bab": {"branching": "fsb"}}`` from ``bab.branching=fsb`` (the value read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set takes KEY=VALUE (e.g. --set bab.batch=64), got {text!r}.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    data: dict = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        data = {part: data}
    return data


def _merge(into: dict, more: dict) -> dict:
    out = dict(into)
    for k, v in more.items():
        both = isinstance(out.get(k), dict) and isinstance(v, dict)
        out[k] = _merge(out[k], v) if both else v
    return out


def verifier_config(path: str | Path | None = None, overrides: list[str] | None = None):
    """The verifier's options: the defaults, then the YAML file ``path``, then each
    ``KEY=VALUE`` of ``overrides`` (the command line's ``--set``, which win); None when
    neither is given (the verifier then takes its defaults)."""
    if path is None and not overrides:
        return None
    from verifriend.verify.verifier import VerifierConfig

    config = VerifierConfig()
    kind = "verifier option"
    if path is not None:
        config = build_options(VerifierConfig, read_yaml_file(path, "verifier options"),
                               str(path), kind)
    if overrides:
        data: dict = {}
        for text in overrides:
            data = _merge(data, _assignment(text))
        config = build_options(VerifierConfig, data, "--set", kind, base=config)
    return config
