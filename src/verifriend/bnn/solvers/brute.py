"""A brute-force backend: tries every assignment of the free variables. An oracle for tests.

Assignments are checked in blocks of up to 2**16 rows with numpy, so 20 variables (the limit)
take about a second or two. The time limit is checked between blocks.
"""

from __future__ import annotations

import time

import numpy as np

from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers.base import SolveResult
from verifriend.errors import UserError

MAX_VARS = 20
_BLOCK_BITS = 16


class BruteForceBackend:
    name = "brute"

    def __init__(self) -> None:
        self._formula: CardFormula | None = None

    def load(self, formula: CardFormula) -> None:
        if formula.num_vars > MAX_VARS:
            raise UserError(
                f"the brute-force backend handles at most {MAX_VARS} variables; "
                f"this formula has {formula.num_vars}"
            )
        self._formula = formula

    def _satisfied(self, rows: np.ndarray) -> np.ndarray:
        """rows[:, v] is the value of variable v (column 0 unused); True where all constraints hold."""

        def val(lit: int) -> np.ndarray:
            col = rows[:, abs(lit)]
            return col if lit > 0 else ~col

        ok = np.ones(len(rows), dtype=bool)
        for clause in self._formula.clauses:
            sat = np.zeros(len(rows), dtype=bool)
            for lit in clause:
                sat |= val(lit)
            ok &= sat
        for y, lits, bound in self._formula.cards:
            count = np.zeros(len(rows), dtype=np.int64)
            for lit in lits:
                count += val(lit)
            ok &= val(y) == (count >= bound)
        return ok

    def solve(self, assumptions: list[int], time_limit: float | None = None) -> SolveResult:
        if self._formula is None:
            raise RuntimeError("brute: load() a formula before solve()")
        t0 = time.perf_counter()
        n = self._formula.num_vars
        fixed: dict[int, bool] = {}
        for lit in assumptions:
            if not 1 <= abs(lit) <= n:
                raise ValueError(f"assumption {lit} is outside variables 1..{n}")
            if fixed.setdefault(abs(lit), lit > 0) != (lit > 0):
                return SolveResult("unsat", None, time.perf_counter() - t0)
        free = [v for v in range(1, n + 1) if v not in fixed]
        total = 1 << len(free)
        block = 1 << min(len(free), _BLOCK_BITS)
        for start in range(0, total, block):
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                return SolveResult("unknown", None, time.perf_counter() - t0)
            index = np.arange(start, min(start + block, total), dtype=np.int64)
            rows = np.zeros((len(index), n + 1), dtype=bool)
            for bit, v in enumerate(free):
                rows[:, v] = (index >> bit) & 1
            for v, value in fixed.items():
                rows[:, v] = value
            hits = np.flatnonzero(self._satisfied(rows))
            if len(hits):
                row = rows[hits[0]]
                model = [v if row[v] else -v for v in range(1, n + 1)]
                return SolveResult("sat", model, time.perf_counter() - t0)
        return SolveResult("unsat", None, time.perf_counter() - t0)

    def close(self) -> None:
        self._formula = None
