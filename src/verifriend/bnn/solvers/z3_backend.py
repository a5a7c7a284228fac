"""Z3 backend: y == AtLeast(lits, b), or a pseudo-Boolean PbGe when a literal repeats.

A repeated literal becomes one term with its multiplicity as coefficient. Queries are
`check(*assumptions)` under the solver's `timeout` parameter; Z3 answers unknown when it runs out.
Each backend object has its own Z3 context, so two backends never share state.
"""

from __future__ import annotations

import time
from collections import Counter

import z3

from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers.base import SolveResult, early_result

_NO_TIMEOUT_MS = 4294967295  # Z3's "no limit"


class Z3Backend:
    name = "z3"

    def __init__(self, logic: str | None = None) -> None:
        """logic: None for z3.Solver(), or a logic for z3.SolverFor (e.g. "QF_FD")."""
        self.logic = logic
        if logic is not None:
            self.name = f"z3-{logic.lower()}"
        self._ctx: z3.Context | None = None
        self._solver: z3.Solver | None = None
        self._vars: list = []
        self._num_vars = 0
        self.build_time_s = 0.0

    def _lit(self, lit: int):
        var = self._vars[abs(lit)]
        return var if lit > 0 else z3.Not(var, self._ctx)

    def load(self, formula: CardFormula) -> None:
        self.close()
        t0 = time.perf_counter()
        ctx = self._ctx = z3.Context()
        if self.logic is None:
            solver = z3.Solver(ctx=ctx)
        else:
            solver = z3.SolverFor(self.logic, ctx=ctx)
        self._num_vars = formula.num_vars
        self._vars = [None] + [z3.Bool(f"x{v}", ctx) for v in range(1, formula.num_vars + 1)]
        false = z3.BoolVal(False, ctx)
        for clause in formula.clauses:
            if not clause:
                solver.add(false)
            elif len(clause) == 1:
                solver.add(self._lit(clause[0]))
            else:
                solver.add(z3.Or([self._lit(lit) for lit in clause], ctx))
        for y, lits, bound in formula.cards:
            n = len(lits)
            if bound <= 0:
                solver.add(self._lit(y))
            elif bound > n:
                solver.add(self._lit(-y))
            else:
                counts = Counter(lits)
                if len(counts) == n:
                    expr = z3.AtLeast(*[self._lit(lit) for lit in lits], bound)
                else:
                    expr = z3.PbGe([(self._lit(lit), c) for lit, c in counts.items()], bound)
                solver.add(self._lit(y) == expr)
        self._solver = solver
        self.build_time_s = time.perf_counter() - t0

    def solve(self, assumptions: list[int], time_limit: float | None = None) -> SolveResult:
        early = early_result(self.name, self._solver, time_limit)
        if early is not None:
            return early
        timeout_ms = _NO_TIMEOUT_MS if time_limit is None else max(1, int(time_limit * 1000))
        self._solver.set("timeout", timeout_ms)
        lits = [self._lit(lit) for lit in assumptions]
        t0 = time.perf_counter()
        result = self._solver.check(*lits)
        elapsed = time.perf_counter() - t0
        if result == z3.unsat:
            return SolveResult("unsat", None, elapsed)
        if result != z3.sat:
            return SolveResult("unknown", None, elapsed, {"reason": self._solver.reason_unknown()})
        m = self._solver.model()
        true_vars = set()
        for decl in m.decls():
            if z3.is_true(m.get_interp(decl)):
                name = decl.name()
                if name.startswith("x") and name[1:].isdigit():
                    true_vars.add(int(name[1:]))
        model = [v if v in true_vars else -v for v in range(1, self._num_vars + 1)]
        return SolveResult("sat", model, elapsed)

    def close(self) -> None:
        self._solver = None
        self._vars = []
        self._ctx = None
