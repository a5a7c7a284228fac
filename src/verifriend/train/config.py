"""Training configuration: one dataclass, validated on construction, dict in and out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from verifriend.errors import UserError

# Training methods with a loss function in ``losses.LOSSES``; keep the two in step.
METHODS = ("natural", "madry", "trades", "rs", "nbc", "ibp", "crown-ibp", "global")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step")
GAMMA_VARIANTS = ("rank", "one", "rank-width")
NBC_STEPS = ("sign", "gradient")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run; invalid values raise ``UserError``."""

    method: str = "natural"  # one of METHODS, or several joined by "+" (a weighted sum)
    method_weights: list[float] | None = None  # weights of a sum; None -> 1 each
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-4
    optimizer: str = "adam"  # "adam" | "sgd" (momentum 0.9)
    lr_schedule: str = "constant"  # "constant" | "cosine" (to 0) | "step" (x0.1 at 50%, 75%)
    val_split: float = 0.0  # share of the training set held out for validation accuracy
    augment: bool = False  # random crop (4-pixel padding) + horizontal flip, for CIFAR-10
    eps: float = 0.1  # training radius in pixel space
    nbc_k: int = 10  # sign steps to find the neighbour x'
    nbc_alpha: float | None = None  # step size of that search; None -> eps / 10
    nbc_beta: float = 1.0  # weight of the NBC term
    # the search's step: "sign" (alpha * sign of the gradient, as PGD) or "gradient" (alpha *
    # the gradient itself, Algorithm 2 of the NBC paper read literally)
    nbc_step: str = "sign"
    # "rank": gamma_i = 2^rank(width_i); "one": 1; "rank-width": 2^rank(width_i) * width_i
    nbc_gamma: str = "rank"
    pgd_steps: int = 10  # PGD-like training (madry, trades, rs): attack steps
    pgd_alpha: float | None = None  # their step size; None -> eps / 10
    trades_beta: float = 6.0
    # weight of the ReLU-stability penalty (ramped up with eps); it sums over every hidden
    # neuron (4,804 in MNIST cnn_4layer): 0.01 held training accuracy to 80% after 3
    # epochs at eps 0.1, 0.001 reached 90% with 98.8% of neurons stable at eps 0.02
    rs_weight: float = 0.001
    l1_weight: float = 2e-5  # L1 weight penalty of the rs method
    # the global method (GROCKET): CE + global_weight * R_GR at delta global_delta (None: eps)
    global_weight: float = 0.1
    global_delta: float | None = None
    weight_decay: float = 0.0  # L2 penalty (sum of squared weights) added to any method's loss
    ramp: float = 0.5  # share of training over which eps / kappa / weights are ramped
    # share of each phase over which the training radius of every method grows linearly
    # from 0 to eps (a warm-up; 0: eps from the first batch, as the NBC paper trains)
    eps_ramp: float = 0.0
    kappa_end: float = 0.5  # certified training: weight of the clean CE at the end
    init: str | None = None  # a .pt written by `verifriend train` to start from (fine-tuning)
    # fine-tuning to an accuracy band [low, high] (fractions): stop after the first epoch
    # whose validation accuracy is <= high (needs val_split > 0)
    stop_acc_band: list[float] | None = None
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None  # use only the first N training examples

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.method, str):
            raise UserError("method must be a string such as 'nbc' or 'madry+nbc'.")
        for part in self.methods:
            if part not in METHODS:
                raise UserError(f"Unknown method {part!r}; choose one of {', '.join(METHODS)} "
                                "(or several joined by '+').")
        if self.method_weights is not None and (
                not isinstance(self.method_weights, list)
                or len(self.method_weights) != len(self.methods)
                or not all(_is_num(w) and w >= 0 for w in self.method_weights)):
            raise UserError(f"method_weights must list {len(self.methods)} number(s) >= 0, one "
                            f"per method of {self.method!r}.")
        for name, options in (("optimizer", OPTIMIZERS), ("nbc_gamma", GAMMA_VARIANTS),
                              ("lr_schedule", LR_SCHEDULES), ("nbc_step", NBC_STEPS)):
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
            (_is_int(self.pgd_steps) and self.pgd_steps >= 0,
             "pgd_steps must be an integer >= 0."),
            (self.pgd_alpha is None or (_is_num(self.pgd_alpha) and self.pgd_alpha > 0),
             "pgd_alpha must be a positive number or null."),
            (_is_num(self.trades_beta) and self.trades_beta >= 0,
             "trades_beta must be a number >= 0."),
            (_is_num(self.rs_weight) and self.rs_weight >= 0, "rs_weight must be a number >= 0."),
            (_is_num(self.l1_weight) and self.l1_weight >= 0, "l1_weight must be a number >= 0."),
            (_is_num(self.global_weight) and self.global_weight >= 0,
             "global_weight must be a number >= 0."),
            (self.global_delta is None or (_is_num(self.global_delta) and self.global_delta > 0),
             "global_delta must be a positive number or null."),
            (_is_num(self.weight_decay) and self.weight_decay >= 0,
             "weight_decay must be a number >= 0."),
            (_is_num(self.ramp) and 0 <= self.ramp <= 1, "ramp must be a number in [0, 1]."),
            (_is_num(self.eps_ramp) and 0 <= self.eps_ramp <= 1,
             "eps_ramp must be a number in [0, 1]."),
            (_is_num(self.kappa_end) and 0 <= self.kappa_end <= 1,
             "kappa_end must be a number in [0, 1]."),
            (_is_num(self.val_split) and 0 <= self.val_split < 1,
             "val_split must be a number in [0, 1)."),
            (isinstance(self.augment, bool), "augment must be true or false."),
            (self.init is None or isinstance(self.init, str), "init must be a checkpoint path."),
            (self.stop_acc_band is None or (
                isinstance(self.stop_acc_band, list) and len(self.stop_acc_band) == 2
                and all(_is_num(v) for v in self.stop_acc_band)
                and 0 <= self.stop_acc_band[0] <= self.stop_acc_band[1] <= 1),
             "stop_acc_band must be [low, high] with 0 <= low <= high <= 1."),
            (self.stop_acc_band is None or self.val_split > 0,
             "stop_acc_band needs a validation split (val_split > 0)."),
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
    def methods(self) -> list[str]:
        """The methods of ``method`` ("madry+nbc" -> ["madry", "nbc"])."""
        return [m.strip() for m in self.method.split("+")]

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
        for key in ("lr", "eps", "nbc_alpha", "nbc_beta", "pgd_alpha", "trades_beta",
                    "rs_weight", "l1_weight", "ramp", "eps_ramp", "kappa_end", "val_split"):
            if isinstance(values.get(key), str):
                try:
                    values[key] = float(values[key])
                except ValueError as exc:
                    raise UserError(f"{key} must be a number, got {values[key]!r}.") from exc
        return cls(**values)
