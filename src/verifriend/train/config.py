"""Training configuration: one dataclass, validated on construction, dict in and out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from verifriend.errors import UserError

# Training methods with a loss function in ``trainer.LOSSES``; keep the two in step.
METHODS = ("natural", "nbc")
OPTIMIZERS = ("adam", "sgd")
GAMMA_VARIANTS = ("rank", "one")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run; invalid values raise ``UserError``."""

    method: str = "natural"  # "natural" | "nbc"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-4
    optimizer: str = "adam"  # "adam" | "sgd" (momentum 0.9)
    eps: float = 0.1  # training radius in pixel space
    nbc_k: int = 10  # sign steps to find the neighbour x'
    nbc_alpha: float | None = None  # step size of that search; None -> eps / 10
    nbc_beta: float = 1.0  # weight of the NBC term
    nbc_gamma: str = "rank"  # "rank": gamma_i = 2^rank(width_i); "one": gamma_i = 1
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None  # use only the first N training examples

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        for name, options in (("method", METHODS), ("optimizer", OPTIMIZERS),
                              ("nbc_gamma", GAMMA_VARIANTS)):
            value = getattr(self, name)
            if value not in options:
                raise UserError(f"Unknown {name} {value!r}; choose one of {', '.join(options)}.")
        checks = [
            (_is_int(self.epochs) and self.epochs >= 1, "epochs must be an integer >= 1."),
            (_is_int(self.batch_size) and self.batch_size >= 1,
             "batch_size must be an integer >= 1."),
            (_is_num(self.lr) and self.lr > 0, "lr must be a positive number."),
            (_is_num(self.eps) and 0 <= self.eps < float("inf"),
             "eps must be a finite number >= 0."),
            (_is_int(self.nbc_k) and self.nbc_k >= 0, "nbc_k must be an integer >= 0."),
            (self.nbc_alpha is None or (_is_num(self.nbc_alpha) and self.nbc_alpha > 0),
             "nbc_alpha must be a positive number or null."),
            (_is_num(self.nbc_beta) and self.nbc_beta >= 0, "nbc_beta must be a number >= 0."),
            (_is_int(self.seed), "seed must be an integer."),
            (self.limit is None or (_is_int(self.limit) and self.limit >= 1),
             "limit must be an integer >= 1 or null."),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise UserError(f"Unknown device {self.device!r}.") from exc

    @property
    def alpha(self) -> float:
        """Step size of the NBC neighbour search (``nbc_alpha`` or ``eps / 10``)."""
        return self.nbc_alpha if self.nbc_alpha is not None else self.eps / 10

    def to_dict(self) -> dict:
        """Plain dict of all fields (JSON/YAML friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict; unknown keys and invalid values raise ``UserError``."""
        if not isinstance(d, dict):
            raise UserError("A training config must be a mapping of field names to values.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"Unknown training config key(s): {', '.join(map(str, unknown))}.")
        values = dict(d)
        # YAML writes 1e-3 as a string unless it has a dot; accept numeric strings for floats
        for key in ("lr", "eps", "nbc_alpha", "nbc_beta"):
            if isinstance(values.get(key), str):
                try:
                    values[key] = float(values[key])
                except ValueError as exc:
                    raise UserError(f"{key} must be a number, got {values[key]!r}.") from exc
        return cls(**values)
