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
    learned clause, including those that depend on the assumptions (longer clauses); the
    decision heuristics {"phase_saving": 0} (a fixed default polarity, negative unless
    `phases` says otherwise), {"random_polarity": 1} (each decision's sign random, seeded by
    "random_seed": reproducible), {"random_var_freq": f}.

    fresh_units: EEV's way of using a solver (its MiniSatCS; `native-eev` in the registry): every
    solve builds a new solver from the formula with the query's assumptions added as unit
    clauses (level-0 propagation and simplification before search), so nothing carries over
    between queries; the result's time_s counts that build (stats "load_s"), and the core of an
    unsat answer is all the assumptions.
    """

    name = "native"

    def __init__(
        self,
        priority_vars: Iterable[int] | None = None,
        conflict_limit: int | None = None,
        phases: Iterable[int] | None = None,
        options: dict[str, float] | None = None,
        fresh_units: bool = False,
    ) -> None:
        self._solver: _cardsat.Solver | None = None
        self._formula: CardFormula | None = None
        self._priority_used: list[int] | None = None
        self.fresh_units = fresh_units
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
        priority = list(priority_vars) if priority_vars is not None else self._priority
        if priority is None:
            priority = formula.priority
        self._formula = formula
        self._priority_used = priority
        self._solver = self._build(formula, priority)
        self._num_vars = formula.num_vars
        self.build_time_s = time.perf_counter() - t0
        stats = self._solver.stats()
        self.build_stats = {k: stats[k] for k in ("clauses", "cards")}

    def _build(self, formula: CardFormula, priority: list[int] | None) -> _cardsat.Solver:
        solver = _cardsat.Solver()
        for key, value in self.options.items():
            solver.set_option(key, float(value))
        solver.reserve_vars(formula.num_vars)
        solver.add_clauses(formula.clauses)
        solver.add_cards(formula.cards)
        if priority:
            solver.set_decision_priority(priority, 1)
        if self._phases:
            solver.set_phases(self._phases)
        return solver

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
        load_s = 0.0
        if self.fresh_units:
            t0 = time.perf_counter()
            assert self._formula is not None
            solver = self._build(self._formula, self._priority_used)
            for a in assumptions:
                solver.add_clause([a])
            self._solver = solver
            load_s = time.perf_counter() - t0
            self._last_assumptions = assumptions
            if time_limit is not None:
                time_limit = max(0.0, time_limit - load_s)
        before = solver.stats()
        t0 = time.perf_counter()
        status = solver.solve(
            [] if self.fresh_units else assumptions,
            conflict_limit,
            -1.0 if time_limit is None else float(time_limit),
        )
        elapsed = time.perf_counter() - t0 + load_s
        after = solver.stats()
        stats = {k: after[k] - before[k] for k in _COUNTERS}
        stats["learnts"] = after["learnts"]
        if self.fresh_units:
            stats["load_s"] = load_s
        if status != "sat":
            return SolveResult(status, None, elapsed, stats)
        return SolveResult("sat", solver.model()[: self._num_vars], elapsed, stats)

    def core(self) -> list[int]:
        """After an "unsat" under assumptions: a subset of them that is already unsat."""
        if self.fresh_units:  # the assumptions were unit clauses: no core to read back
            return list(getattr(self, "_last_assumptions", []))
        return list(self.solver.core())

    def close(self) -> None:
        self._solver = None
        self._formula = None


# EEV's MiniSatCS settings (issue 26): no phase saving, random polarity, a new solver per query
# with the input box as unit clauses
EEV_OPTIONS: dict[str, float] = {"phase_saving": 0, "random_polarity": 1}


class NativeEEVBackend(NativeBackend):
    """The native solver used as EEV uses MiniSatCS (`NativeBackend` with fresh_units and
    `EEV_OPTIONS`; options given here override those). Like MiniSatCS it decides by VSIDS
    alone: no decision priority unless priority_vars are given (the formula's own priority is
    not used; on cardsat_speed's mid-u2 suite the priority epochs doubled the time per
    conflict and the conflicts, see csrc/cardsat/README.md)."""

    name = "native-eev"

    def __init__(self, priority_vars: Iterable[int] | None = None,
                 conflict_limit: int | None = None, phases: Iterable[int] | None = None,
                 options: dict[str, float] | None = None) -> None:
        super().__init__([] if priority_vars is None else priority_vars, conflict_limit, phases,
                         {**EEV_OPTIONS, **(options or {})}, fresh_units=True)
