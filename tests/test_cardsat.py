"""The native solver (verifriend._cardsat, NativeBackend) against real oracles.

- small random formulas (<= 12 variables): verdicts against brute-force enumeration, every
  model checked with CardFormula.check, every unsat core re-checked by enumeration;
- larger random formulas (50-200 variables): verdicts against CaDiCaL (PySAT) on a CNF
  reification of every card;
- one loaded solver answering many assumption sets agrees with fresh solvers;
- conflict and time limits give "unknown"; solving releases the GIL;
- MiniSatCS's known defects as regressions: the final conflict when a card propagation falsifies
  an assumption, and variables that are pure, unused or fixed at level 0 assumed later;
- the EEV heuristics (phase saving off, random polarity, random decisions) and `native-eev`.
"""

from __future__ import annotations

import importlib
import random
import sys
import threading
import time

import numpy as np
import pytest

from verifriend import _cardsat  # built by `pip install`: a missing module is a failure
from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers.native import NativeBackend

# ---------------------------------------------------------------- helpers


def random_lits(
    rng: random.Random, nv: int, n: int, repeats: float, heavy: bool = False
) -> list[int]:
    """n literals over variables 1..nv, never a literal with its negation, some repeated
    (heavy: most literals up to 6 times, like the output layer's weight differences)."""
    lits: list[int] = []
    for _ in range(n):
        v = rng.randint(1, nv)
        lit = v if rng.random() < 0.5 else -v
        if -lit in lits:
            lit = -lit
        lits.append(lit)
    if heavy:
        return [lit for lit in lits for _ in range(rng.choice((1, 1, 2, 3, 6)))]
    if lits and rng.random() < repeats:
        lits += [rng.choice(lits) for _ in range(rng.randint(1, 2 * len(lits)))]
        rng.shuffle(lits)
    return lits


def random_small_formula(rng: random.Random) -> CardFormula:
    nv = rng.randint(1, 12)
    f = CardFormula(num_vars=nv)
    for _ in range(rng.randint(0, 2 * nv)):
        f.add_clause([rng.choice((-1, 1)) * rng.randint(1, nv) for _ in range(rng.randint(1, 4))])
    for _ in range(rng.randint(0, nv)):
        y = rng.choice((-1, 1)) * rng.randint(1, nv)
        lits = random_lits(rng, nv, rng.randint(0, 8), repeats=0.3)
        bound = rng.randint(-2, len(lits) + 2)  # bounds <= 0 and > len(lits) included
        f.add_card(y, lits, bound)
    return f


def brute_force(f: CardFormula) -> np.ndarray:
    """Rows (bool [2**n, n + 1], column 0 unused) of every assignment that satisfies f."""
    n = f.num_vars
    codes = np.arange(2**n, dtype=np.int64)
    rows = np.zeros((2**n, n + 1), dtype=bool)
    for v in range(1, n + 1):
        rows[:, v] = (codes >> (v - 1)) & 1 == 1

    def val(lit: int) -> np.ndarray:
        return rows[:, lit] if lit > 0 else ~rows[:, -lit]

    ok = np.ones(len(rows), dtype=bool)
    for clause in f.clauses:
        sat = np.zeros(len(rows), dtype=bool)
        for lit in clause:
            sat |= val(lit)
        ok &= sat
    for y, lits, bound in f.cards:
        count = np.zeros(len(rows), dtype=np.int64)
        for lit in lits:
            count += val(lit)
        ok &= val(y) == (count >= bound)
    return rows[ok]


def satisfiable_under(models: np.ndarray, assumptions: list[int]) -> bool:
    keep = np.ones(len(models), dtype=bool)
    for lit in assumptions:
        keep &= models[:, abs(lit)] == (lit > 0)
    return bool(keep.any())


# How the solver treats assumptions (see csrc/cardsat/README.md): "minisat": a level per
# assumption, every learned clause kept; "base": one base level, clauses learned from it are
# temporary; "keep": base level, such clauses kept with their base-level literals added
# (a large cap, so almost every one is kept and then reused by the later queries).
MODES = {
    "minisat": {"assumption_mode": 0},
    "base": {"assumption_mode": 1, "keep_base_max": 0},
    "keep": {"assumption_mode": 1, "keep_base_max": 1000, "reset_after": 0},
    # heuristics reset at every later solve and again after its first conflict
    "reset": {"assumption_mode": 1, "reset_between": 7, "reset_after": 1},
    # EEV's MiniSatCS heuristics (no phase saving, random polarity) plus random decisions
    "eev": {"phase_saving": 0, "random_polarity": 1, "random_var_freq": 0.1, "random_seed": 7},
}


def new_solver(f: CardFormula, mode: str = "base") -> _cardsat.Solver:
    s = _cardsat.Solver()
    for name, value in MODES[mode].items():
        s.set_option(name, value)
    s.reserve_vars(f.num_vars)
    s.add_clauses(f.clauses)
    s.add_cards(f.cards)
    return s


def check_answer(f: CardFormula, s: _cardsat.Solver, status: str, assumptions: list[int]) -> None:
    if status == "sat":
        model = s.model()
        assert len(model) == f.num_vars
        assert f.check(model)
        assert set(assumptions) <= set(model)
    else:
        assert status == "unsat"
        assert set(s.core()) <= set(assumptions)


# ---------------------------------------------------------------- (a) brute force


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("seed", range(2))
def test_small_formulas_match_brute_force(seed: int, mode: str) -> None:
    rng = random.Random(1000 + seed)
    counts = {"sat": 0, "unsat": 0}
    for _ in range(300):  # 2 x 2 x 300 formulas, 3 queries each
        f = random_small_formula(rng)
        models = brute_force(f)
        s = new_solver(f, mode)
        for q in range(3):
            assumptions = (
                []
                if q == 0
                else [
                    rng.choice((-1, 1)) * rng.randint(1, f.num_vars)
                    for _ in range(rng.randint(1, 4))
                ]
            )
            status = s.solve(assumptions)
            expected = satisfiable_under(models, assumptions)
            assert status == ("sat" if expected else "unsat"), (f, assumptions)
            check_answer(f, s, status, assumptions)
            if status == "unsat" and assumptions:
                assert not satisfiable_under(models, s.core()), (f, assumptions, s.core())
            counts[status] += 1
    assert counts["sat"] > 100 and counts["unsat"] > 100  # both verdicts well exercised


def test_card_edge_cases() -> None:
    cases = [
        ((1, [], 0), True),  # empty sum >= 0: y true
        ((1, [], 1), False),  # empty sum >= 1: y false
        ((1, [2, 2, 2], 3), None),  # repeated literal: y <-> x2
        ((1, [2, 3], -5), True),
        ((1, [2, 3], 3), False),
        ((1, [1, 2], 1), None),  # y inside its own sum
        ((-1, [1, 1, 2], 2), None),
        ((1, [-1, -1, 2], 2), None),
    ]
    for (y, lits, bound), forced in cases:
        f = CardFormula(num_vars=3)
        f.add_card(y, lits, bound)
        models = brute_force(f)
        for assumption in ([1], [-1], [2], [-2], [1, 2], [1, -2], [-1, 2], [-1, -2]):
            s = new_solver(f)
            status = s.solve(assumption)
            assert status == ("sat" if satisfiable_under(models, assumption) else "unsat")
            check_answer(f, s, status, assumption)
        if forced is not None:
            s = new_solver(f)
            assert s.solve([1 if forced else -1]) == "sat"
            assert s.solve([-1 if forced else 1]) == "unsat"


# ---------------------------------------------------------------- (b) PySAT oracle


def reified_cnf(f: CardFormula) -> list[list[int]]:
    """f as CNF: each card by CardEnc with the reification trick; repeats as fresh copies."""
    from pysat.card import CardEnc, EncType

    top = f.num_vars
    cnf = [list(c) for c in f.clauses]
    for y, lits, bound in f.cards:
        if bound <= 0:
            cnf.append([y])
            continue
        if bound > len(lits):
            cnf.append([-y])
            continue
        distinct: list[int] = []
        for lit in lits:  # a repeated literal: a fresh variable equal to it
            if lit in distinct:
                top += 1
                cnf += [[-top, lit], [top, -lit]]
                distinct.append(top)
            else:
                distinct.append(lit)
        atleast = CardEnc.atleast(distinct, bound=bound, top_id=top, encoding=EncType.seqcounter)
        top = max(top, atleast.nv)
        cnf += [c + [-y] for c in atleast.clauses]
        atmost = CardEnc.atmost(distinct, bound=bound - 1, top_id=top, encoding=EncType.seqcounter)
        top = max(top, atmost.nv)
        cnf += [c + [y] for c in atmost.clauses]
    return cnf


def random_large_formula(rng: random.Random, heavy: bool) -> CardFormula:
    nv = rng.randint(50, 200)
    f = CardFormula(num_vars=nv)
    for _ in range(int(nv * rng.uniform(0.5, 3.5))):
        f.add_clause([rng.choice((-1, 1)) * rng.randint(1, nv) for _ in range(3)])
    for _ in range(int(nv * rng.uniform(0.02, 0.3))):
        y = rng.choice((-1, 1)) * rng.randint(1, nv)
        lits = random_lits(rng, nv, rng.randint(2, 20), repeats=0.3, heavy=heavy)
        f.add_card(y, lits, rng.randint(-1, len(lits) + 1))
    return f


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("heavy", [False, True])
def test_larger_formulas_match_cadical(heavy: bool, mode: str) -> None:
    import pysat.solvers as pysat_solvers  # in the test extras: its absence is a failure
    rng = random.Random(2000 + heavy)
    counts = {"sat": 0, "unsat": 0}
    conflicts = 0
    for _ in range(60):
        f = random_large_formula(rng, heavy)
        s = new_solver(f, mode)
        with pysat_solvers.Solver(name="cadical153", bootstrap_with=reified_cnf(f)) as oracle:
            for q in range(10):  # many queries on one solver: state carried between them
                assumptions = [
                    rng.choice((-1, 1)) * rng.randint(1, f.num_vars)
                    for _ in range(0 if q == 0 else rng.randint(1, 6))
                ]
                status = s.solve(assumptions)
                expected = oracle.solve(assumptions=assumptions)
                assert status == ("sat" if expected else "unsat")
                check_answer(f, s, status, assumptions)
                if status == "unsat" and assumptions:
                    assert not oracle.solve(assumptions=s.core())
                counts[status] += 1
        conflicts += s.stats()["conflicts"]
    assert counts["sat"] > 50 and counts["unsat"] > 50
    assert conflicts > 500  # the search (learning, backjumping) was exercised


# a formula (reduced by delta debugging) on which clauses learned under assumptions once
# propagated below the assumption level, after a unit that holds without them was learned
_REGRESSION_CLAUSES = [
    [35, 27, 55], [-2, 13, -48], [-46, -56, -37], [-51, -31, 4], [-13, 37, -7], [-51, 4, 9],
    [-11, 40, -22], [11, -56, -39], [-55, 21, -57], [39, 31, 7], [35, 16, 56], [51, -30, 57],
    [-9, 13, -51], [-21, 17, -49], [38, 35, -21], [32, 22, -10], [-13, 37, -2],
]  # fmt: skip
_REGRESSION_CARDS = [
    (-21, [-37, 42, 33, -32, 48, -40], 6),
    (-35, [35, -36, -48, -57, -63, -3, 23, 47], -1),
    (-56, [-52] * 2 + [27] * 6 + [-48] * 6 + [49] + [-46] * 6 + [56] * 3 + [-48] * 6
     + [-16, -63, -30, -30, -48, -2, -34, 27, -34, -34, 35, 35, 35, 21], 12),
    (16, [39, 33, -56, -47, 18, 8, -42, -17, 11, -28, 11, 1, -13, 1, 61, 22, 59], 17),
    (49, [16] + [-27] * 6 + [28] * 3 + [40] * 6 + [47] * 3 + [26] + [-60] * 6 + [-58] * 3
     + [37] * 6 + [62] * 6 + [-6] * 2 + [36] * 6 + [48] + [-27] * 6 + [-6] * 2 + [50] * 6
     + [57] * 6 + [46], 6),
    (30, [-43, -42, 22, -21, -60, 33, 56], 3),
    (2, [38, -17, 4, -27], 2),
]  # fmt: skip


@pytest.mark.parametrize("mode", list(MODES))
def test_regression_units_learned_under_assumptions(mode: str) -> None:
    f = CardFormula(num_vars=63, clauses=_REGRESSION_CLAUSES, cards=_REGRESSION_CARDS)
    models = oracle_satisfiable(f, [10, -14])
    s = new_solver(f, mode)
    assert s.solve([]) == "sat" and f.check(s.model())
    status = s.solve([10, -14])
    assert status == ("sat" if models else "unsat")
    assert s.okay()
    assert s.solve([]) == "sat" and f.check(s.model())


def oracle_satisfiable(f: CardFormula, assumptions: list[int]) -> bool:
    """Satisfiable under the assumptions? (PySAT when available, else the solver afresh with
    the assumptions as unit clauses.)"""
    try:
        from pysat.solvers import Solver
    except ImportError:
        s = new_solver(f)
        for lit in assumptions:
            s.add_clause([lit])
        return s.solve([]) == "sat"
    with Solver(name="cadical153", bootstrap_with=reified_cnf(f)) as oracle:
        return bool(oracle.solve(assumptions=assumptions))


# ---------------------------------------------------------------- (c) incremental use


def layered_formula(
    rng: random.Random, inputs: int, widths: list[int]
) -> tuple[CardFormula, list[int]]:
    """A random binarized network: y_i <-> sum of ~half the previous layer's literals >= b_i."""
    f = CardFormula(num_vars=inputs)
    prev = list(range(1, inputs + 1))
    for width in widths:
        layer = []
        for _ in range(width):
            lits = [v if rng.random() < 0.5 else -v for v in prev if rng.random() < 0.5]
            y = f.new_var()
            f.add_card(y, lits, len(lits) // 2 + rng.randint(-1, 1))
            layer.append(y)
        prev = layer
    f.add_clause([prev[0], -prev[1], prev[2]])  # a goal over the last layer
    return f, prev


@pytest.mark.parametrize("mode", list(MODES))
def test_incremental_solver_agrees_with_fresh_ones(mode: str) -> None:
    rng = random.Random(7)
    f, outputs = layered_formula(rng, 36, [30, 30, 10])
    loaded = NativeBackend(options=MODES[mode])
    loaded.load(f)
    verdicts = []
    for _ in range(30):
        free = rng.randint(8, 26)
        fixed = rng.sample(range(1, 37), 36 - free) + rng.sample(outputs, 4)
        assumptions = [v if rng.random() < 0.5 else -v for v in fixed]
        result = loaded.solve(assumptions)
        fresh = NativeBackend()
        fresh.load(f)
        for lit in assumptions:  # assumptions as unit clauses
            fresh.solver.add_clause([lit])
        expected = fresh.solve([])
        assert result.status == expected.status
        if result.status == "sat":
            assert f.check(result.model) and set(assumptions) <= set(result.model)
        verdicts.append(result.status)
    assert {"sat", "unsat"} <= set(verdicts)
    stats = loaded.solver.stats()
    assert stats["conflicts"] > 100
    if mode in ("base", "reset", "eev"):  # clauses learned from the assumptions are gone after each call
        assert stats["temporary_learned"] > 0 and stats["kept_with_base"] == 0
    elif mode == "keep":  # ... or kept, valid for the later assumption sets checked above
        assert stats["kept_with_base"] > 0 and stats["learnts"] > 0
        assert stats["heuristic_resets"] == 0  # reset_after 0: warm heuristics throughout
    else:
        assert stats["temporary_learned"] == 0 and stats["learnts"] > 0
    if mode == "reset":  # the fallback ran (after a solve's first conflict)
        assert stats["heuristic_resets"] > 0


def test_clauses_added_between_solves() -> None:
    rng = random.Random(11)
    for _ in range(100):
        f = random_small_formula(rng)
        s = new_solver(f)
        s.solve([])
        for _ in range(3):
            extra = random_small_formula(rng)
            clauses = [[lit for lit in c if abs(lit) <= f.num_vars] or [1] for c in extra.clauses]
            cards = [
                (y, [lit for lit in ls if abs(lit) <= f.num_vars], b)
                for y, ls, b in extra.cards
                if abs(y) <= f.num_vars
            ]
            f.clauses += clauses
            f.cards += cards
            s.add_clauses(clauses)
            s.add_cards(cards)
            status = s.solve([])
            assert status == ("sat" if len(brute_force(f)) else "unsat")
            check_answer(f, s, status, [])


# ---------------------------------------------------------------- (d) limits


def pigeonhole(holes: int) -> CardFormula:
    """holes + 1 pigeons into holes holes: each hole's 'at least 2' card is false."""
    f = CardFormula(num_vars=(holes + 1) * holes)

    def var(p: int, h: int) -> int:
        return p * holes + h + 1

    for p in range(holes + 1):
        f.add_clause([var(p, h) for h in range(holes)])
    for h in range(holes):
        y = f.new_var()
        f.add_card(y, [var(p, h) for p in range(holes + 1)], 2)
        f.add_clause([-y])
    return f


def test_conflict_and_time_limits_give_unknown() -> None:
    f = pigeonhole(10)
    s = new_solver(f)
    assert s.solve([], 2000) == "unknown"
    assert s.stats()["conflicts"] <= 2001
    t0 = time.perf_counter()
    assert s.solve([], -1, 0.3) == "unknown"
    assert time.perf_counter() - t0 < 2.0
    backend = NativeBackend(conflict_limit=1000)
    backend.load(f)
    result = backend.solve([])
    assert result.status == "unknown" and result.model is None
    assert 0 < result.stats["conflicts"] <= 1001
    backend.conflict_limit = None
    result = backend.solve([], time_limit=0.3)
    assert result.status == "unknown" and result.time_s < 2.0
    assert backend.solve([], time_limit=0).status == "unknown"
    small = NativeBackend()
    small.load(pigeonhole(6))
    assert small.solve([]).status == "unsat"


# ---------------------------------------------------------------- (e) threads


def test_solve_releases_the_gil() -> None:
    results: list[str] = []

    def work(seconds: float) -> None:
        s = new_solver(pigeonhole(11))
        results.append(s.solve([], -1, seconds))

    threads = [threading.Thread(target=work, args=(1.0,)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # both solving now
    last, longest_gap = time.perf_counter(), 0.0
    while any(t.is_alive() for t in threads):  # the main thread keeps running Python code
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        last = now
        time.sleep(0.001)
    for t in threads:
        t.join()
    assert results == ["unknown", "unknown"]
    assert longest_gap < 0.5


# ---------------------------------------------------------------- MiniSatCS's known defects


def check_against_brute(f: CardFormula, s: _cardsat.Solver, models: np.ndarray,
                        assumptions: list[int]) -> str:
    status = s.solve(assumptions)
    assert status == ("sat" if satisfiable_under(models, assumptions) else "unsat"), assumptions
    check_answer(f, s, status, assumptions)
    if status == "unsat":
        assert not satisfiable_under(models, s.core()), (assumptions, s.core())
    return status


@pytest.mark.parametrize("mode", list(MODES))
def test_regression_final_conflict_through_cards(mode: str) -> None:
    """An assumption falsified by a card propagation from earlier assumptions (MiniSatCS's
    final conflict analysis fails there): unsat with a core that is itself unsat."""
    f = CardFormula(num_vars=10)
    f.add_card(7, [1, 2, 3], 2)  # y=7 from two of 1..3 (target-inferring)
    f.add_card(8, [4, 5, 6], 3)  # y=8 true forces 4, 5, 6 (operand-inferring)
    f.add_card(9, [7, -8, 1, 1], 3)  # weights: 1 counts twice
    f.add_card(10, [9, 4], 2)  # a chain of cards to the goal
    models = brute_force(f)
    s = new_solver(f, mode)
    queries = [
        [1, 2, -7],  # card propagates 7, assumption -7 falsified
        [-7, 1, 2],  # the same, the falsified assumption first
        [8, -5],  # y true forces 5 against the assumption
        [-5, 8],
        [1, 2, -8, -9],  # 9 from 7, 1 (weight 2) against -9
        [1, 3, 8, 6, -10],  # through two levels of cards
        [3, 8, -4],
        [1, -7, 2, 3, -9, 8],
        [],
    ]
    for _ in range(2):  # repeated solves on one solver, and a fresh one per query
        statuses = [check_against_brute(f, s, models, q) for q in queries]
        for q, st in zip(queries, statuses, strict=True):
            assert check_against_brute(f, new_solver(f, mode), models, q) == st
    assert statuses[:7] == ["unsat"] * 7
    backend = NativeBackend(options=MODES[mode])
    backend.load(f)
    assert backend.solve([1, 2, -7]).status == "unsat"
    assert not satisfiable_under(models, backend.core()) and set(backend.core()) <= {1, 2, -7}


@pytest.mark.parametrize("mode", list(MODES))
def test_regression_dead_and_level0_variables_under_assumptions(mode: str) -> None:
    """Variables that occur in one polarity only, in no constraint, or are fixed or satisfied
    away at level 0 (MiniSatCS removes dead variables unsoundly under assumptions) must answer
    correctly when assumed later, in any order, across repeated solves on one solver."""
    f = CardFormula(num_vars=14)
    f.add_clause([1, 2])  # 1, 2: pure (positive only)
    f.add_clause([1, 3, -4])  # 3 pure positive, 4 pure negative
    f.add_clause([5])  # 5 fixed true at level 0
    f.add_clause([5, 6])  # satisfied at level 0, removed by simplification: 6 then dead
    f.add_clause([-5, 7])  # 7 fixed true by propagation at level 0
    f.add_card(8, [5, 7, 9], 2)  # y=8 decided at level 0 by fixed literals; 9 only here
    f.add_card(10, [10, 11, 12], 2)  # y inside its own sum
    f.add_card(13, [-11, -12], 1)
    # 14: in no constraint at all
    models = brute_force(f)
    rng = random.Random(5)
    lits = [v * sgn for v in range(1, 15) for sgn in (1, -1)]
    queries = [[-5], [-7], [-8], [6], [-6], [-6, -1, -2], [-1, -2], [4, -1, -3], [9], [-9, 8],
               [14], [-14], [10, -11, -12], [-13, 10], [-5, 6, 9]]
    queries += [rng.sample(lits, rng.randint(1, 5)) for _ in range(60)]
    s = new_solver(f, mode)
    for round_ in range(3):
        order = list(queries) if round_ == 0 else rng.sample(queries, len(queries))
        for q in order:
            check_against_brute(f, s, models, q)
            if round_ == 0:
                check_against_brute(f, new_solver(f, mode), models, q)
    assert s.okay() and s.solve([]) == "sat" and f.check(s.model())


def test_heuristic_options_are_reproducible() -> None:
    """Random polarity and decisions come from a seeded generator: the same seed gives the same
    search; every option combination stays correct."""
    rng = random.Random(11)
    f, _ = layered_formula(rng, 40, [40, 30, 10])
    runs = []
    assumptions = [v if rng.random() < 0.5 else -v for v in range(1, 13)]
    for opts in ({"phase_saving": 0}, {"phase_saving": 0, "default_negative": 0},
                 {"random_polarity": 1, "random_seed": 3}, {"random_polarity": 1, "random_seed": 3},
                 {"random_var_freq": 0.2, "random_seed": 9}):
        s = _cardsat.Solver()
        for k, v in opts.items():
            s.set_option(k, v)
        s.reserve_vars(f.num_vars)
        s.add_clauses(f.clauses)
        s.add_cards(f.cards)
        status = s.solve(assumptions)
        if status == "sat":
            assert f.check(s.model()) and set(assumptions) <= set(s.model())
        runs.append((status, s.stats()["decisions"], s.stats()["conflicts"]))
    assert runs[2] == runs[3]  # same seed, same search
    with pytest.raises(ValueError):
        _cardsat.Solver().set_option("no_such_option", 1)


def test_native_eev_backend_matches_native() -> None:
    """native-eev: a new solver per query, the assumptions as unit clauses."""
    from verifriend.bnn.solvers import make_backend

    rng = random.Random(3)
    f, _ = layered_formula(rng, 30, [25, 20, 8])
    eev, plain = make_backend("native-eev"), NativeBackend()
    assert eev.name == "native-eev"
    eev.load(f)
    plain.load(f)
    for _ in range(25):
        q = [v if rng.random() < 0.5 else -v for v in rng.sample(range(1, 31), 12)]
        a, b = eev.solve(q), plain.solve(q)
        assert a.status == b.status
        if a.status == "sat":
            assert f.check(a.model) and set(q) <= set(a.model)
            assert "load_s" in a.stats and a.time_s >= a.stats["load_s"]
        else:
            assert set(eev.core()) == set(q)


# ---------------------------------------------------------------- the backend


def test_native_backend_result_shape() -> None:
    f = CardFormula(num_vars=4)
    f.add_card(4, [1, 2, 3], 2)
    f.add_clause([4])
    backend = NativeBackend(priority_vars=[1, 2, 3])
    assert backend.name == "native"
    backend.load(f)
    r = backend.solve([-1])
    assert r.status == "sat" and len(r.model) == 4 and f.check(r.model) and -1 in r.model
    assert r.time_s >= 0 and "conflicts" in r.stats and "propagations" in r.stats
    r = backend.solve([-1, -2])
    assert r.status == "unsat" and r.model is None
    assert set(backend.core()) <= {-1, -2}
    backend.close()
    with pytest.raises(RuntimeError):
        backend.solve([])


def test_missing_extension_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import verifriend

    monkeypatch.setitem(sys.modules, "verifriend._cardsat", None)
    monkeypatch.delattr(verifriend, "_cardsat")
    monkeypatch.delitem(sys.modules, "verifriend.bnn.solvers.native")
    with pytest.raises(ImportError, match="C\\+\\+"):
        importlib.import_module("verifriend.bnn.solvers.native")
