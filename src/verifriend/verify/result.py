"""The verdict of one verification problem: plain data shared by the verifier stages,
the campaign runner and the VNN-COMP writer."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

STATUSES = ("sat", "unsat", "timeout", "unknown")


@dataclass
class Verdict:
    """Outcome of verifying one spec.

    ``status``: "sat" (``counterexample`` holds an input in the box whose output, computed
    in float64, lies in the unsafe region), "unsat" (proved; every closing bound was
    confirmed in float64), "timeout" or "unknown" (e.g. a layer the complete stage cannot
    handle). ``counterexample`` is ``(x, y)``: flat float64 input and its float64 output.
    ``stage`` names the stage that decided ("attack", "ibp", "crown", "alpha", "bab",
    "milp"); ``domains`` counts branch-and-bound subproblems bounded.
    """

    status: str
    time_s: float
    stage: str = ""
    domains: int = 0
    counterexample: tuple[Tensor, Tensor] | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown verdict status {self.status!r}")
