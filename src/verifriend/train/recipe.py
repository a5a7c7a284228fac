"""Phased training recipes: a YAML file listing phases trained one after another.

::

    # RS for 2 epochs, then RS+NBC for 3
    phases:
      - {method: rs, epochs: 2}
      - {method: rs+nbc, epochs: 3, nbc_beta: 0.5}

Each phase is a set of :class:`TrainConfig` fields over the base config (the command
line's options); the phases share the weights, each gets its own optimizer and schedules.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from verifriend.errors import UserError
from verifriend.train.config import TrainConfig


def recipe_phases(data: object, base: TrainConfig) -> list[TrainConfig]:
    """The phases of a parsed recipe (``{"phases": [...]}``) over ``base``."""
    if not isinstance(data, dict) or not isinstance(data.get("phases"), list) or not data["phases"]:
        raise UserError("a recipe must be a mapping with a non-empty list 'phases' of "
                        "training settings, e.g. phases: [{method: rs, epochs: 2}].")
    unknown = sorted(set(data) - {"phases", "description"})
    if unknown:
        raise UserError(f"unknown recipe key(s): {', '.join(map(str, unknown))}.")
    phases = []
    for i, phase in enumerate(data["phases"], 1):
        if not isinstance(phase, dict):
            raise UserError(f"phase {i} of the recipe must be a mapping of settings.")
        try:
            phases.append(TrainConfig.from_dict({**base.to_dict(), **phase}))
        except UserError as exc:
            raise UserError(f"phase {i} of the recipe: {exc}") from exc
    return phases


def read_yaml(path: str | Path) -> object:
    """The parsed YAML file ``path``; an unreadable or malformed file is a UserError."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read the recipe {path}: {exc.strerror or exc}.") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"the recipe {path} is not valid YAML: {exc}") from exc


def load_recipe(path: str | Path, base: TrainConfig) -> list[TrainConfig]:
    """Read a recipe file (see the module docstring)."""
    return recipe_phases(read_yaml(path), base)
