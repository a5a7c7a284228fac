"""Exact (cutting-planes pseudo-Boolean solver, PyPI package `exact`) backend.

Each card is one `addReification(y, sign, terms, bound)`: y <-> sum(terms) >= bound, with a
repeated literal as one term whose coefficient is its multiplicity and a negated literal -v as
the term -c * v with c moved to the bound. Clauses are linear constraints sum >= 1 in the same way.
Queries set the assumptions, run `runFull(optimize=False, timeout)` and clear them again.

`exact` is optional: it is imported when the backend is built.
"""

from __future__ import annotations

import time
from collections import Counter

from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers.base import SolveResult, early_result
from verifriend.errors import UserError


def _terms(lits) -> tuple[list[tuple[int, str]], int]:
    """Terms of sum([l] for l in lits) over the variables, and the constant of negated literals."""
    terms, offset = [], 0
    for lit, count in Counter(lits).items():
        if lit > 0:
            terms.append((count, f"x{lit}"))
        else:
            terms.append((-count, f"x{-lit}"))
            offset += count
    return terms, offset


class ExactBackend:
    name = "exact"

    def __init__(self) -> None:
        try:
            import exact
        except ImportError as exc:
            raise UserError(
                "the 'exact' backend needs the Python package 'exact' (pip install exact)"
            ) from exc
        self._exact_module = exact
        self._solver = None
        self._num_vars = 0
        self._names: list[str] = []
        self.build_time_s = 0.0

    def load(self, formula: CardFormula) -> None:
        self.close()
        t0 = time.perf_counter()
        solver = self._exact_module.Exact([("verbosity", "0")])
        self._num_vars = formula.num_vars
        self._names = [f"x{v}" for v in range(1, formula.num_vars + 1)]
        for name in self._names:
            solver.addVariable(name)
        for clause in formula.clauses:
            terms, offset = _terms(clause)
            solver.addConstraint(terms, True, 1 - offset)
        for y, lits, bound in formula.cards:
            n = len(lits)
            if bound <= 0 or bound > n:
                terms, offset = _terms([y if bound <= 0 else -y])
                solver.addConstraint(terms, True, 1 - offset)
                continue
            terms, offset = _terms(lits)
            solver.addReification(f"x{abs(y)}", y > 0, terms, bound - offset)
        self._solver = solver
        self.build_time_s = time.perf_counter() - t0

    def solve(self, assumptions: list[int], time_limit: float | None = None) -> SolveResult:
        early = early_result(self.name, self._solver, time_limit)
        if early is not None:
            return early
        fixed: dict[int, int] = {}
        t0 = time.perf_counter()
        for lit in assumptions:
            val = int(lit > 0)
            if fixed.setdefault(abs(lit), val) != val:  # x and -x both assumed
                return SolveResult("unsat", None, time.perf_counter() - t0)
        solver = self._solver
        solver.setAssumptions([(f"x{v}", val) for v, val in fixed.items()])
        try:
            state = solver.runFull(False, 0 if time_limit is None else float(time_limit))
        finally:
            solver.clearAssumptions()
        elapsed = time.perf_counter() - t0
        if state in ("UNSAT", "INCONSISTENT"):
            return SolveResult("unsat", None, elapsed)
        if state != "SAT":
            return SolveResult("unknown", None, elapsed, {"state": state})
        values = solver.getLastSolutionFor(self._names)
        model = [v if values[v - 1] else -v for v in range(1, self._num_vars + 1)]
        return SolveResult("sat", model, elapsed)

    def close(self) -> None:
        self._solver = None
