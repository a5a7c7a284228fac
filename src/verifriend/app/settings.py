"""One settings object per job, validated once, on construction.

The command line builds these from its flags (and the verifier's options from ``--config``
and ``--set``, :mod:`verifriend.app.config`); library callers build them directly. Each
``__post_init__`` checks its values with the checks below and raises ``UserError`` with one
sentence; the jobs do not check them again. The sentences name the command-line flag where
the command line is how most users set the value (the settings are the app's, so they may).
Only light imports here: the verifier's options come in with the settings that need them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifriend.errors import UserError


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_radius(value: Any, name: str) -> None:
    """An Linf radius in pixel space: in [0, 1]."""
    if not (_number(value) and 0 <= value <= 1):
        raise UserError(f"{name} must be in [0, 1] (pixel space), got {value}.")


def check_at_least(value: Any, name: str, low: float, unit: str = "") -> None:
    """A number (count, radius, seconds) of at least ``low``; ``unit`` follows ``low``."""
    if not (_number(value) and value >= low):
        raise UserError(f"{name} must be {'at least ' if low else '>= '}{low:g}{unit}, "
                        f"got {value}.")


def check_seconds(value: Any, name: str, *, zero: bool = False, finite: bool = True,
                  wording: str = "") -> None:
    """A time limit in seconds, positive (or zero when ``zero``), finite unless not ``finite``."""
    ok = (_number(value) and (math.isfinite(value) or not finite)
          and (value >= 0 if zero else value > 0))
    if not ok:
        text = wording or (">= 0 seconds" if zero else "a positive number of seconds")
        raise UserError(f"{name} must be {text}, got {value}.")


def parse_indices(text: str, name: str) -> tuple[int, int]:
    """``"START:STOP"`` -> (start, stop); one sentence naming flag ``name`` when it is not two
    integers."""
    try:
        start, stop = (int(p) for p in text.split(":"))
    except ValueError:
        raise UserError(f"{name} must be START:STOP (e.g. 201:401), got '{text}'.") from None
    return start, stop


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) for ``--shard``; one sentence when it is not two integers (the
    range is :func:`check_shard`'s)."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must be I/N (e.g. 0/4 for the first of four), got '{text}'.") from None
    return i, n


def check_index_range(value: Any, name: str) -> None:
    """None, or test images [start, stop) with 0 <= start < stop."""
    if value is None:
        return
    start, stop = value
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop):
        raise UserError(f"{name} must be START:STOP with 0 <= START < STOP, got {start}:{stop}.")


def check_device(value: Any) -> None:
    """``cpu`` or ``cuda`` (whether a CUDA GPU is there is checked where the job starts)."""
    if value not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got '{value}'.")


def check_shard(value: Any) -> None:
    """None, or shard (I, N) with 0 <= I < N: the properties whose position % N == I."""
    if value is not None and not (isinstance(value[0], int) and isinstance(value[1], int)
                                  and 0 <= value[0] < value[1]):
        raise UserError(f"--shard must be I/N with 0 <= I < N, got {value[0]}/{value[1]}.")


# --- the zoo models: train, evaluate, verify, export, bounds, vnncomp ---------------------------

@dataclass(frozen=True)
class TrainSettings:
    """`verifriend train`: a zoo architecture trained on a data set in one or more phases
    (:class:`~verifriend.train.config.TrainConfig` each; a recipe's phases share the weights)."""

    out: Path
    phases: tuple = ()  # of TrainConfig
    arch: str = "cnn_4layer"
    dataset: str = "mnist-embedded"
    data_dir: str | None = None
    name: str = "model"  # the files' stem: <name>.pt, <name>.train.json, <name>.state.pt
    restart: bool = False

    def __post_init__(self) -> None:
        if not self.phases:
            raise UserError("a recipe needs at least one phase.")
        for p in self.phases:
            check_radius(p.eps, "training eps")


@dataclass(frozen=True)
class EvaluateSettings:
    """`verifriend evaluate`: friendliness metrics of a checkpoint at each radius and, with a
    ``timeout``, the complete verifier's figures (its logs in ``log_dir``, default: the
    model's folder)."""

    model: Path
    eps: tuple[float, ...] = (0.05,)
    per_class: int = 10
    pgd_steps: int = 100
    timeout: float = 0.0
    test_limit: int | None = None
    data_dir: str | None = None
    log_dir: Path | None = None
    dataset: str | None = None  # an ONNX model's data set (default MNIST); a checkpoint's own
    indices: tuple[int, int] | None = None  # test images [start, stop) instead of per_class
    alpha: bool = False  # also the share proved by alpha-CROWN
    device: str = "cpu"  # bounds, attacks and the verifier
    ray: str | None = None  # the complete verifier's properties on Ray: "auto", "local" or an address
    shard: tuple[int, int] | None = None  # (I, N): this process verifies shard I of N

    def __post_init__(self) -> None:
        check_device(self.device)
        check_shard(self.shard)
        for e in self.eps:
            check_radius(e, "eps")
        check_at_least(self.per_class, "--per-class", 1)
        check_seconds(self.timeout, "--timeout", zero=True)
        if self.test_limit is not None:
            check_at_least(self.test_limit, "--test-limit", 1)
        check_index_range(self.indices, "--indices")


@dataclass(frozen=True)
class CompareSettings:
    """`verifriend evaluate` on several models: one :class:`EvaluateSettings` each (the same
    radii and properties), compared in a verified-% table written to ``out`` (also the
    verifier logs' folder) when given."""

    runs: tuple[EvaluateSettings, ...]
    out: Path | None = None

    def __post_init__(self) -> None:
        if not self.runs:
            raise UserError("evaluate needs at least one model.")
        if len({(r.eps, r.indices, r.per_class) for r in self.runs}) != 1:
            raise UserError("the models of one evaluation share the radii and properties.")
        if len({Path(r.model).resolve() for r in self.runs}) != len(self.runs):
            raise UserError("a model is given twice; each model once.")


@dataclass(frozen=True)
class CampaignSettings:
    """`verifriend verify`: the complete verifier on ``per_class`` test images per class, its
    results logged to ``out`` (default: `<model stem>.verify.eps<E>.jsonl` beside the model)."""

    model: Path
    eps: float
    timeout: float
    per_class: int = 10
    data_dir: str | os.PathLike | None = None
    out: Path | None = None
    seed: int = 0
    verifier: Any = None  # a VerifierConfig; None: the verifier's defaults
    dataset: str | None = None  # an ONNX model's data set (default MNIST); a checkpoint's own
    indices: tuple[int, int] | None = None  # test images [start, stop) instead of per_class
    device: str = "cpu"  # where the verifier computes its bounds and attacks
    ray: str | None = None  # properties sent to Ray workers: "auto", "local" or an address
    shard: tuple[int, int] | None = None  # (I, N): this process verifies shard I of N

    def __post_init__(self) -> None:
        check_device(self.device)
        check_shard(self.shard)
        check_radius(self.eps, "--eps")
        check_seconds(self.timeout, "--timeout")
        check_at_least(self.per_class, "--per-class", 1)
        check_index_range(self.indices, "--indices")

    @property
    def results_file(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        p = Path(self.model)
        return p.with_name(f"{p.stem}.verify.eps{self.eps:g}.jsonl")


@dataclass(frozen=True)
class VnncompSettings:
    """`verifriend vnncomp`: one VNN-COMP instance within ``timeout`` seconds, counted from
    the start of the run; the result file goes to ``out`` (None: no file)."""

    model: Path
    spec: Path
    timeout: float = 300.0
    out: Path | None = None
    verifier: Any = None  # a VerifierConfig; None: the verifier's defaults
    device: str = "cpu"
    verbose: bool = False  # each stage, its time and the best bound so far on stderr

    def __post_init__(self) -> None:
        check_device(self.device)
        check_seconds(self.timeout, "the timeout")


BOUND_METHODS = ("ibp", "crown", "alpha")


@dataclass(frozen=True)
class BoundsSettings:
    """`verifriend bounds`: bounds of every output constraint of a VNN-LIB spec."""

    model: Path
    spec: Path
    method: str = "crown"
    iterations: int = 20  # alpha-CROWN's
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.method not in BOUND_METHODS:
            raise UserError(f"unknown bound method '{self.method}'; choose one of "
                            f"{', '.join(BOUND_METHODS)}.")
        check_at_least(self.iterations, "--iterations", 0)


@dataclass(frozen=True)
class SparsifySettings:
    """`verifriend sparsify`: the VNN LP rewrite of an ONNX network's hidden layers."""

    model: Path
    out: Path
    eps: float = 0.0
    dataset: str = "mnist"
    data_dir: str | None = None
    val_indices: tuple[int, int] = (1, 201)  # test images [start, stop), the paper's 1..200
    baseline: str | None = None  # "magnitude": also write the magnitude-pruned network
    workers: int = 2
    max_rows: int = 4000  # most LP rows per convolution channel (distinct fields, at random)
    output_layer: bool = False  # also rewrite the output layer (label-margin rows)

    def __post_init__(self) -> None:
        if not (_number(self.eps) and 0 <= self.eps < 1):
            raise UserError(f"--eps must be in [0, 1) (a relative tolerance), got {self.eps}.")
        check_index_range(self.val_indices, "--val-indices")
        if self.baseline not in (None, "magnitude"):
            raise UserError(f"unknown --baseline '{self.baseline}'; the one baseline is "
                            "'magnitude'.")
        check_at_least(self.workers, "--workers", 1)
        check_at_least(self.max_rows, "--max-rows", 1)
        kinds = {Path(self.model).suffix.lower(), Path(self.out).suffix.lower()}
        if len(kinds) != 1 or not kinds <= {".onnx", ".pt"}:
            raise UserError("sparsify writes the format it reads: MODEL and --out both end in "
                            ".onnx or both in .pt.")


@dataclass(frozen=True)
class ExportSettings:
    """`verifriend export`: a checkpoint as an ONNX file."""

    model: Path
    onnx: Path


# --- the demo and experiments ------------------------------------------------------------------

@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains and how it evaluates; defaults run in minutes on 2 cores."""

    arch: str = "cnn_4layer"
    dataset: str = "mnist-embedded"
    data_dir: str | None = None
    epochs: int = 20
    lr: float = 1e-3
    train_eps: float = 0.1
    eval_eps: float = 0.05
    per_class: int = 10
    verify_timeout: float = 5.0  # seconds per property for the complete verifier (0: skip)
    seed: int = 0
    out: str = "demo-out"

    def __post_init__(self) -> None:
        check_radius(self.train_eps, "training eps")
        check_radius(self.eval_eps, "evaluation eps")
        check_at_least(self.epochs, "--epochs", 1)
        check_at_least(self.per_class, "--per-class", 1)
        check_seconds(self.verify_timeout, "--verify-timeout", zero=True)


@dataclass(frozen=True)
class EvaluationPlan:
    """An experiment's evaluation of every method (the recipe's ``evaluate`` section)."""

    eps: tuple = (0.02, 0.05)
    per_class: int = 10
    timeout: float = 10.0
    pgd_steps: int = 100
    test_limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.eps, (list, tuple)) or not self.eps:
            raise UserError("evaluate.eps must be a non-empty list of radii.")
        object.__setattr__(self, "eps", tuple(self.eps))
        for e in self.eps:
            check_radius(e, "evaluate.eps")
        check_at_least(self.per_class, "evaluate.per_class", 1)
        check_seconds(self.timeout, "evaluate.timeout", zero=True)
        check_at_least(self.pgd_steps, "evaluate.pgd_steps", 0)
        if self.test_limit is not None:
            check_at_least(self.test_limit, "evaluate.test_limit", 1)

    def as_dict(self) -> dict:
        return {"eps": list(self.eps), "per_class": self.per_class, "timeout": self.timeout,
                "pgd_steps": self.pgd_steps, "test_limit": self.test_limit}


@dataclass(frozen=True)
class ExperimentSettings:
    """`verifriend experiment`: a parsed recipe (``experiment.Experiment``) run into ``out``."""

    experiment: Any  # an app.experiment.Experiment, validated when parsed
    out: Path
    data_dir: str | None = None
    only: tuple[str, ...] = ()  # run these methods of the recipe only (empty: all)


# --- binarized networks ------------------------------------------------------------------------

def parse_arch(arch: str) -> str | list[int]:
    """A BNN architecture name (mlp, conv-small, conv-large, digits) or hidden widths like
    '100,50' (a list of integers)."""
    if arch[:1].isdigit():
        try:
            return [int(w) for w in arch.split(",")]
        except ValueError:
            raise UserError(f"--arch {arch!r}: widths must be integers like 100,50.") from None
    return arch


def _bnn_train_default():
    from verifriend.bnn.train import BNNTrainConfig

    return BNNTrainConfig()


@dataclass(frozen=True)
class BnnTrainSettings:
    """`verifriend bnn train`: a BNN trained with ``config`` (a ``BNNTrainConfig``) and saved
    to ``out`` (.pt, with a .json summary beside it)."""

    out: Path
    arch: str = "conv-small"
    dataset: str = "mnist"
    data_dir: str | None = None
    config: Any = field(default_factory=_bnn_train_default)  # a BNNTrainConfig
    step: float | None = None  # input quantization step (None: the architecture's)
    sparsity: str = "binmask"
    test_limit: int | None = None
    pgd_images: int = 1000  # test images of the PGD-20 accuracy in the summary
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def __post_init__(self) -> None:
        parse_arch(self.arch)
        if self.test_limit is not None:
            check_at_least(self.test_limit, "--test-limit", 1)
        if self.threads is not None:
            check_at_least(self.threads, "--threads", 1)


@dataclass(frozen=True)
class BnnVerifySettings:
    """`verifriend bnn verify`: exact verification of a saved BNN on its test set."""

    model: Path
    eps: float = 0.1
    solver: str = "native"
    timeout: float | None = None  # seconds per image (None: no limit)
    limit: int | None = None  # the first N test images
    dataset: str | None = None  # default: the one the model was trained on
    data_dir: str | None = None
    pgd_steps: int = 20
    log: Path | None = None  # one JSON line per image

    def __post_init__(self) -> None:
        check_at_least(self.eps, "--eps", 0)
        if self.timeout is not None:
            check_seconds(self.timeout, "--timeout", finite=False, wording="> 0 seconds")
        if self.limit is not None:
            check_at_least(self.limit, "--limit", 1, " image")
        check_at_least(self.pgd_steps, "--pgd-steps", 0)


@dataclass(frozen=True)
class BnnBenchSettings:
    """`verifriend bnn bench`: the same BNN queries on every solver backend. None means the
    benchmark's default (see ``app.bnn_bench.run_bench``)."""

    models: tuple[Path, ...] = ()  # saved BNNs; none: the bench networks
    quick: bool = False
    nets: tuple[str, ...] | None = None
    models_dir: Path = Path("runs/bnn-bench")
    backends: tuple[str, ...] | None = None
    radii: tuple[float, ...] | None = None
    images: int | None = None
    timeout: float | None = None
    max_clauses: int | None = None
    dataset: str | None = None
    data_dir: str | None = None
    workers: int = 2
    out: Path | None = None  # everything, per-query verdicts included, as JSON

    def __post_init__(self) -> None:
        if self.timeout is not None:
            check_seconds(self.timeout, "--timeout", finite=False, wording="> 0 seconds")
        if self.radii:
            check_at_least(min(self.radii), "--eps", 0)
        if self.images is not None:
            check_at_least(self.images, "--images", 1)
        if self.max_clauses is not None:
            check_at_least(self.max_clauses, "--max-clauses", 1)
        check_at_least(self.workers, "--workers", 1)


# --- global robustness --------------------------------------------------------------------------

def parse_outputs(text: str | None) -> tuple[int, ...] | None:
    """``"0,1,5"`` -> (0, 1, 5); None stays None (every output)."""
    if text is None:
        return None
    try:
        out = tuple(int(p) for p in text.split(",") if p.strip() != "")
    except ValueError:
        raise UserError(f"--outputs must list output indices like 0,1,5, got '{text}'.") from None
    if not out or min(out) < 0:
        raise UserError(f"--outputs must list output indices >= 0 like 0,1,5, got '{text}'.")
    return out


def parse_domain(text: str) -> tuple[float, float]:
    """``"LOW:HIGH"`` -> (low, high) with low < high."""
    try:
        lo, hi = (float(p) for p in text.split(":"))
    except ValueError:
        raise UserError(f"--domain must be LOW:HIGH (e.g. 0:1), got '{text}'.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UserError(f"--domain must be LOW:HIGH with finite LOW < HIGH, got '{text}'.")
    return lo, hi


@dataclass(frozen=True)
class GlobalSettings:
    """`verifriend global`: per output, certified bounds of the largest output change under
    any input perturbation of size ``delta`` in the domain (GROCKET), and PGD's lower bound.
    ``timeout`` is per output; ``dataset`` gives the attack's data starts (default: the
    checkpoint's data set; an ONNX model gets MNIST's, or random starts only if absent)."""

    model: Path
    delta: float
    outputs: tuple[int, ...] | None = None
    timeout: float = 60.0
    domain: tuple[float, float] = (0.0, 1.0)
    dataset: str | None = None
    data_dir: str | None = None
    attack_starts: int = 1000
    random_starts: int = 256
    attack_steps: int = 50
    input_free: bool = False  # branch and bound on the paper's input-free relaxation
    batch: int = 32
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.domain
        if not (_number(self.delta) and 0 < self.delta <= hi - lo):
            raise UserError(f"--delta must be in (0, {hi - lo:g}] (the domain's width), "
                            f"got {self.delta}.")
        check_seconds(self.timeout, "--timeout")
        for value, name, low in ((self.attack_starts, "--attack-starts", 0),
                                 (self.random_starts, "--random-starts", 0),
                                 (self.attack_steps, "--attack-steps", 0),
                                 (self.batch, "--batch", 1)):
            check_at_least(value, name, low)
        if self.attack_starts + self.random_starts < 1:
            raise UserError("the attack needs a start: --attack-starts or --random-starts >= 1.")
        check_device(self.device)
