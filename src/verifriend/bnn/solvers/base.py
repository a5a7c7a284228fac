"""The interface every BNN query backend offers (native, PySAT encodings, CP-SAT, Z3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from verifriend.bnn.formula import CardFormula


@dataclass
class SolveResult:
    status: str  # "sat" | "unsat" | "unknown"
    model: list[int] | None = None  # signed literals for variables 1..num_vars when sat
    time_s: float = 0.0  # solve time only (the build is timed apart)
    stats: dict = field(default_factory=dict)


class Backend(Protocol):
    """Load a formula once, then answer many queries under assumptions."""

    name: str

    def load(self, formula: CardFormula) -> None: ...

    def solve(
        self, assumptions: list[int], time_limit: float | None = None
    ) -> SolveResult: ...

    def close(self) -> None: ...


class FormulaTooLarge(Exception):
    """A backend refused to load a formula above its size cap (CNF encodings can explode)."""


def early_result(name: str, handle: object, time_limit: float | None) -> SolveResult | None:
    """What every backend's solve() checks first: loaded (else RuntimeError), time left."""
    if handle is None:
        raise RuntimeError(f"{name}: load() a formula before solve()")
    if time_limit is not None and time_limit <= 0:
        return SolveResult("unknown")
    return None
