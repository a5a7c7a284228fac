"""The native backend: verifriend's own CDCL solver with reified cardinality constraints.

The solver (C++, csrc/cardsat, built into `verifriend._cardsat` when the package is installed)
keeps every card y <-> sum(lits) >= bound as counters of true and false literals and propagates
it both ways; reasons are built only when conflict analysis needs them. One loaded formula
answers many queries under assumptions, keeping its learned clauses between them. The solve
releases the GIL, so several backends can solve in threads at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers.base import SolveResult, early_result

try:
    from verifriend import _cardsat
except ImportError as exc:  # built without a C++ compiler, or a broken install
    raise ImportError(
        "verifriend's native SAT solver (the extension module verifriend._cardsat) is not "
        "importable: reinstall the package on a machine with a C++17 compiler (g++ or clang++) "
        f"and CMake, e.g. `pip install -e .` ({exc})"
    ) from exc

# counters of the solver's statistics that `solve` reports as per-call differences
_COUNTERS = (
    "conflicts",
    "decisions",
    "propagations",
    "card_propagations",
    "card_conflicts",
    "card_explanations",
    "restarts",
    "learned",
    "learned_literals",
    "minimized_literals",
    "reductions",
    "deleted",
    "temporary_learned",
    "kept_with_base",
)


class NativeBackend:
    """`Backend` on the native solver.

    priority_vars (here or in `load`): variables decided before all others, in epochs that
    alternate with plain VSIDS ones (the encoder may pass the input pixels' thermometer
    variables: much faster on hard satisfiable queries, a little slower on unsatisfiable ones;
    {"priority_mode": 0} in options makes it permanent). conflict_limit: a per-query conflict budget
    (None: none); a query that runs out returns "unknown", like one past its time limit.
    phases: literals whose signs are the first values tried. options: solver settings by name
    (`verifriend._cardsat.Solver.set_option`), e.g. {"assumption_mode": 0} to keep every
    learned clause, including those that depend on the assumptions (longer clauses).
    """

    name = "native"

    def __init__(
        self,
        priority_vars: Iterable[int] | None = None,
        conflict_limit: int | None = None,
        phases: Iterable[int] | None = None,
        options: dict[str, float] | None = None,
    ) -> None:
        self._solver: _cardsat.Solver | None = None
        self._num_vars = 0
        self._priority = list(priority_vars) if priority_vars is not None else None
        self._phases = list(phases) if phases is not None else None
        self.conflict_limit = conflict_limit
        self.options = dict(options or {})
        self.build_time_s = 0.0
        self.build_stats: dict = {}

    def load(self, formula: CardFormula, priority_vars: Iterable[int] | None = None) -> None:
        self.close()
        t0 = time.perf_counter()
        solver = _cardsat.Solver()
        for key, value in self.options.items():
            solver.set_option(key, float(value))
        solver.reserve_vars(formula.num_vars)
        solver.add_clauses(formula.clauses)
        solver.add_cards(formula.cards)
        priority = list(priority_vars) if priority_vars is not None else self._priority
        if priority is None:
            priority = formula.priority
        if priority:
            solver.set_decision_priority(priority, 1)
        if self._phases:
            solver.set_phases(self._phases)
        self._solver = solver
        self._num_vars = formula.num_vars
        self.build_time_s = time.perf_counter() - t0
        stats = solver.stats()
        self.build_stats = {k: stats[k] for k in ("clauses", "cards")}

    @property
    def solver(self) -> _cardsat.Solver:
        """The underlying `verifriend._cardsat.Solver` (after `load`)."""
        if self._solver is None:
            raise RuntimeError("native: load() a formula before using the solver")
        return self._solver

    def solve(self, assumptions: list[int], time_limit: float | None = None) -> SolveResult:
        early = early_result(self.name, self._solver, time_limit)
        if early is not None:
            return early
        solver = self.solver
        assumptions = [int(a) for a in assumptions]
        conflict_limit = -1 if self.conflict_limit is None else int(self.conflict_limit)
        before = solver.stats()
        t0 = time.perf_counter()
        status = solver.solve(
            assumptions, conflict_limit, -1.0 if time_limit is None else float(time_limit)
        )
        elapsed = time.perf_counter() - t0
        after = solver.stats()
        stats = {k: after[k] - before[k] for k in _COUNTERS}
        stats["learnts"] = after["learnts"]
        if status != "sat":
            return SolveResult(status, None, elapsed, stats)
        return SolveResult("sat", solver.model()[: self._num_vars], elapsed, stats)

    def core(self) -> list[int]:
        """After an "unsat" under assumptions: a subset of them that is already unsat."""
        return list(self.solver.core())

    def close(self) -> None:
        self._solver = None
