"""Every BNN solver backend agrees with brute force on small random card formulas."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers import BACKENDS, available_backends, make_backend
from verifriend.errors import UserError

AVAILABLE = set(available_backends())
NAMES = [name for name in BACKENDS if name != "brute"]


def backend_or_skip(name: str):
    # only Exact is optional (not in the test extras); every other backend must be here
    if name == "exact" and name not in AVAILABLE:
        pytest.skip("the Exact solver is not installed (pip install exact)")
    return make_backend(name)


def random_formula(rng: random.Random) -> CardFormula:
    """Inputs, then cards over earlier variables (sometimes any variable), then a few clauses.

    Literals repeat often (few variables, up to 8 literals a card); bounds run from -1 to n + 1.
    """
    f = CardFormula()
    for _ in range(rng.randint(2, 5)):
        f.new_var()
    for _ in range(rng.randint(2, 6)):
        pool = list(range(1, f.num_vars + 1))
        signs = {v: rng.choice((1, -1)) for v in pool}  # never a literal with its negation
        n = rng.randint(1, 8)
        lits = [v * signs[v] for v in (rng.choice(pool) for _ in range(n))]
        y = f.new_var()
        f.add_card(y, lits, rng.randint(-1, n + 1))
    if rng.random() < 0.2:  # a card over any variable, later ones and its own output included
        pool = list(range(1, f.num_vars + 1))
        signs = {v: rng.choice((1, -1)) for v in pool}
        n = rng.randint(1, 5)
        f.add_card(rng.choice(pool), [v * signs[v] for v in rng.choices(pool, k=n)], 1 + n // 2)
    for _ in range(rng.randint(0, 4)):
        vs = rng.sample(range(1, f.num_vars + 1), rng.randint(1, min(3, f.num_vars)))
        f.add_clause([v * rng.choice((1, -1)) for v in vs])
    return f


def random_assumptions(rng: random.Random, f: CardFormula) -> list[int]:
    k = rng.randint(0, min(5, f.num_vars))
    return [v * rng.choice((1, -1)) for v in rng.sample(range(1, f.num_vars + 1), k)]


def check_result(f: CardFormula, assumptions: list[int], result, expected: str) -> None:
    assert result.status == expected, (result.status, expected, f, assumptions)
    if expected == "sat":
        assert result.model is not None
        assert sorted(abs(lit) for lit in result.model) == list(range(1, f.num_vars + 1))
        assert f.check(result.model), (f, assumptions, result.model)
        assert set(assumptions) <= set(result.model)
    assert result.time_s >= 0


def brute_verdict(f: CardFormula, assumptions: list[int]) -> str:
    brute = make_backend("brute")
    brute.load(f)
    return brute.solve(assumptions).status


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_brute_force(name):
    rng = random.Random(1234)
    for _ in range(100):
        f = random_formula(rng)
        backend = backend_or_skip(name)
        backend.load(f)
        for assumptions in [[]] + [random_assumptions(rng, f) for _ in range(3)]:
            check_result(f, assumptions, backend.solve(assumptions), brute_verdict(f, assumptions))
        backend.close()


@pytest.mark.parametrize("name", NAMES)
def test_incremental_queries(name):
    """One load, many assumption sets (with time limits and contradictory assumptions)."""
    rng = random.Random(99)
    f = CardFormula()
    inputs = [f.new_var() for _ in range(6)]
    layer = []
    for _ in range(6):
        lits = [v * rng.choice((1, -1)) for v in rng.sample(inputs, 5)]
        lits += rng.sample(lits, 2)  # repeats
        y = f.new_var()
        f.add_card(y, lits, rng.randint(2, 6))
        layer.append(y)
    for _ in range(3):
        y = f.new_var()
        f.add_card(y, [v * rng.choice((1, -1)) for v in rng.sample(layer, 4)], 2)
    f.add_clause([f.num_vars, -(f.num_vars - 1)])
    backend = backend_or_skip(name)
    backend.load(f)
    queries = [[]] + [random_assumptions(rng, f) for _ in range(30)] + [[1, -1], [2, 3, -2]]
    for i, assumptions in enumerate(queries):
        limit = 30.0 if i % 2 else None
        result = backend.solve(assumptions, time_limit=limit)
        check_result(f, assumptions, result, brute_verdict(f, assumptions))
    backend.close()


@pytest.mark.parametrize("name", NAMES)
def test_repeated_literals_and_edge_bounds(name):
    """y <-> sum >= b for every input assignment, every bound from -1 to n + 1, heavy repeats."""
    lits = [1, 1, 1, 2, -3, -3]
    f = CardFormula(num_vars=3)
    outputs = {}
    for bound in range(-1, len(lits) + 2):
        outputs[bound] = f.new_var()
        f.add_card(outputs[bound], lits, bound)
    backend = backend_or_skip(name)
    backend.load(f)
    for bits in itertools.product((False, True), repeat=3):
        inputs = [v if bit else -v for v, bit in zip((1, 2, 3), bits, strict=True)]
        count = 3 * bits[0] + bits[1] + 2 * (not bits[2])
        result = backend.solve(inputs)
        assert result.status == "sat"
        model = set(result.model)
        for bound, y in outputs.items():
            assert (y in model) == (count >= bound), (bits, bound)
        # forcing the wrong value of one output makes it unsat
        for bound, y in outputs.items():
            wrong = -y if count >= bound else y
            assert backend.solve(inputs + [wrong]).status == "unsat", (bits, bound)
    backend.close()


def random_3sat_as_cards(n: int, seed: int) -> CardFormula:
    """Random 3-SAT at the threshold (4.26 clauses a variable), each clause a card y <-> sum >= 1
    with y asserted: hard for every backend (> 8 s for each at n = 300 when measured)."""
    rng = random.Random(seed)
    f = CardFormula(num_vars=n)
    for _ in range(int(4.26 * n)):
        y = f.new_var()
        f.add_card(y, [v * rng.choice((1, -1)) for v in rng.sample(range(1, n + 1), 3)], 1)
        f.add_clause([y])
    return f


@pytest.mark.parametrize("name", NAMES)
def test_time_limit_gives_unknown(name):
    f = random_3sat_as_cards(300, 0)
    backend = backend_or_skip(name)
    backend.load(f)
    t0 = time.perf_counter()
    result = backend.solve([], time_limit=0.1)
    wall = time.perf_counter() - t0
    assert result.status == "unknown"
    assert result.model is None
    assert wall < 5.0  # Gluecard 4 and Exact overshoot by up to about a second
    # the backend stays usable: all inputs true decides every card by propagation alone
    everything_true = list(range(1, 301))
    expected = "sat" if all(max(lits) > 0 for _, lits, _ in f.cards) else "unsat"
    assert backend.solve(everything_true, time_limit=30.0).status == expected
    backend.close()


def test_empty_clause_and_no_cards():
    f = CardFormula(num_vars=2, clauses=[[1, 2], []])
    for name in NAMES:
        if name in AVAILABLE:
            backend = make_backend(name)
            backend.load(f)
            assert backend.solve([]).status == "unsat", name


def test_unknown_backend_name():
    with pytest.raises(UserError, match="valid names: .*cpsat"):
        make_backend("nope")


def test_registry_names():
    expected = {
        f"pysat-{enc}-{sat}"
        for enc in ("seqcounter", "totalizer", "sortnetwrk", "cardnetwrk")
        for sat in ("minisat22", "cadical153")
    } | {"pysat-gluecard4", "pysat-minicard", "cpsat", "z3", "native", "brute"}
    assert expected <= set(BACKENDS)
    assert set(available_backends()) <= set(BACKENDS)
    for name in AVAILABLE - {"native"}:
        assert make_backend(name).name == name


def test_brute_force_refuses_large_formulas():
    brute = make_backend("brute")
    with pytest.raises(UserError, match="at most 20 variables"):
        brute.load(CardFormula(num_vars=21))
