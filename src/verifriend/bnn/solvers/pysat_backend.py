"""PySAT backends: reified cardinality constraints as CNF encodings or as native at-most constraints.

CNF backends (`pysat-<encoding>-<solver>`) encode y <-> sum(lits) >= b by the reification trick:
every clause of a CNF encoding of atleast(lits, b) gets the literal -y (y true enforces it), every
clause of atmost(lits, b - 1) gets y (y false enforces it). Each of the two encodings has its own
auxiliary variables, numbered above the formula's variables. PySAT's `CardEnc` counts a repeated
literal as often as it appears for all four encodings used here (checked in
tests/test_bnn_solvers.py), so repeats go to the encoder unchanged.

Native backends (`pysat-gluecard4`, `pysat-minicard`) keep each direction as one at-most
constraint, with y repeated to switch it on or off (n = len(lits)):

    atmost([-l for l in lits] + [y] * b, n)      y true  => at most n - b false => at least b true
    atmost(lits + [-y] * (n - b + 1), n)          y false => at most b - 1 true

Gluecard 4 and Minicard count a repeated literal with multiplicity in their at-most constraints
(checked by brute force in tests/test_bnn_solvers.py), so no fresh copies are needed.

Bounds b <= 0 make y a unit clause, b > n make -y one.

Time limits: MiniSat 2.2, Gluecard 4 and Minicard are interrupted from a `threading.Timer`
(`solve_limited(expect_interrupt=True)` releases the GIL). PySAT's CaDiCaL 1.5.3 has no interrupt,
so it runs in rounds under a conflict budget, sized from the conflict rate of the previous round,
until the deadline: a round can overshoot the limit by its own length.
"""

from __future__ import annotations

import threading
import time

from pysat.card import CardEnc, EncType
from pysat.solvers import Solver

from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers.base import FormulaTooLarge, SolveResult, early_result

CNF_ENCODINGS = ("seqcounter", "totalizer", "sortnetwrk", "cardnetwrk")
CNF_SOLVERS = ("minisat22", "cadical153")
NATIVE_SOLVERS = ("gluecard4", "minicard")
_NO_INTERRUPT = frozenset({"cadical153"})


def encode_reified_card(
    y: int, lits: list[int], bound: int, top: int, encoding: str
) -> tuple[list[list[int]], int]:
    """CNF clauses for y <-> sum(lits) >= bound; aux variables start at top + 1.

    Returns the clauses and the new top variable.
    """
    n = len(lits)
    if bound <= 0:
        return [[y]], top
    if bound > n:
        return [[-y]], top
    enc = getattr(EncType, encoding)
    lits = list(lits)
    clauses: list[list[int]] = []
    pos = CardEnc.atleast(lits, bound=bound, top_id=top, encoding=enc)
    top = max(top, pos.nv)
    clauses.extend(c + [-y] for c in pos.clauses)
    neg = CardEnc.atmost(lits, bound=bound - 1, top_id=top, encoding=enc)
    top = max(top, neg.nv)
    clauses.extend(c + [y] for c in neg.clauses)
    return clauses, top


def _stats(solver: Solver) -> dict:
    try:
        return dict(solver.accum_stats() or {})
    except (AttributeError, NotImplementedError):
        return {}


class _PySATBackend:
    """Shared load/solve logic; subclasses add the cardinality constraints."""

    solver_name: str
    name: str

    def __init__(self) -> None:
        self._solver: Solver | None = None
        self._num_vars = 0
        self.build_time_s = 0.0
        self.build_stats: dict = {}

    def _add_cards(self, solver: Solver, formula: CardFormula) -> dict: ...

    def load(self, formula: CardFormula) -> None:
        self.close()
        t0 = time.perf_counter()
        solver = Solver(name=self.solver_name)
        for clause in formula.clauses:
            solver.add_clause(clause)
        self.build_stats = self._add_cards(solver, formula)
        self._solver = solver
        self._num_vars = formula.num_vars
        self.build_time_s = time.perf_counter() - t0

    def _run(self, assumptions: list[int], time_limit: float | None) -> bool | None:
        solver = self._solver
        if time_limit is None:
            return solver.solve(assumptions=assumptions)
        if self.solver_name in _NO_INTERRUPT:
            return self._run_budgeted(assumptions, time_limit)
        timer = threading.Timer(time_limit, solver.interrupt)
        timer.daemon = True
        timer.start()
        try:
            return solver.solve_limited(assumptions=assumptions, expect_interrupt=True)
        finally:
            timer.cancel()
            timer.join()
            solver.clear_interrupt()

    def _run_budgeted(self, assumptions: list[int], time_limit: float) -> bool | None:
        solver = self._solver
        deadline = time.perf_counter() + time_limit
        budget = 1000
        while True:
            start = time.perf_counter()
            if start >= deadline:
                return None
            solver.conf_budget(budget)
            result = solver.solve_limited(assumptions=assumptions)
            if result is not None:
                return result
            now = time.perf_counter()
            # conflicts per second in this round; aim the next round at half the time left,
            # since rounds slow down as learnt clauses pile up
            rate = budget / max(now - start, 1e-6)
            budget = max(100, int(min(2 * budget, 0.5 * rate * (deadline - now))))

    def solve(self, assumptions: list[int], time_limit: float | None = None) -> SolveResult:
        early = early_result(self.name, self._solver, time_limit)
        if early is not None:
            return early
        before = _stats(self._solver)
        t0 = time.perf_counter()
        result = self._run(list(assumptions), time_limit)
        elapsed = time.perf_counter() - t0
        after = _stats(self._solver)
        stats = {k: after[k] - before.get(k, 0) for k in after}
        if result is None:
            return SolveResult("unknown", None, elapsed, stats)
        if not result:
            return SolveResult("unsat", None, elapsed, stats)
        model = [-v for v in range(1, self._num_vars + 1)]
        for lit in self._solver.get_model() or []:
            if 0 < abs(lit) <= self._num_vars:
                model[abs(lit) - 1] = lit
        return SolveResult("sat", model, elapsed, stats)

    def close(self) -> None:
        if self._solver is not None:
            self._solver.delete()
            self._solver = None


class PySATCNFBackend(_PySATBackend):
    """Cardinality constraints as CNF (`encoding` in CNF_ENCODINGS) on a plain SAT solver."""

    def __init__(self, encoding: str = "totalizer", solver: str = "cadical153",
                 max_clauses: int | None = None) -> None:
        if encoding not in CNF_ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; choose from {CNF_ENCODINGS}")
        if solver not in CNF_SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose from {CNF_SOLVERS}")
        super().__init__()
        self.encoding = encoding
        self.solver_name = solver
        self.name = f"pysat-{encoding}-{solver}"
        self.max_clauses = max_clauses  # load() raises FormulaTooLarge above it

    def _add_cards(self, solver: Solver, formula: CardFormula) -> dict:
        top = formula.num_vars
        n_clauses = 0
        for y, lits, bound in formula.cards:
            clauses, top = encode_reified_card(y, lits, bound, top, self.encoding)
            n_clauses += len(clauses)
            if self.max_clauses is not None and n_clauses > self.max_clauses:
                solver.delete()
                raise FormulaTooLarge(f"{self.name}: the CNF passes {self.max_clauses} clauses")
            solver.append_formula(clauses)
        return {"aux_vars": top - formula.num_vars, "card_clauses": n_clauses}


class PySATNativeCardBackend(_PySATBackend):
    """Cardinality constraints as native at-most constraints of Gluecard 4 or Minicard."""

    def __init__(self, solver: str = "gluecard4") -> None:
        if solver not in NATIVE_SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose from {NATIVE_SOLVERS}")
        super().__init__()
        self.solver_name = solver
        self.name = f"pysat-{solver}"

    def _add_cards(self, solver: Solver, formula: CardFormula) -> dict:
        for y, lits, bound in formula.cards:
            n = len(lits)
            if bound <= 0:
                solver.add_clause([y])
            elif bound > n:
                solver.add_clause([-y])
            else:
                solver.add_atmost([-lit for lit in lits] + [y] * bound, n)
                solver.add_atmost(list(lits) + [-y] * (n - bound + 1), n)
        return {"atmosts": 2 * len(formula.cards)}
