"""The BNN encoding against exact enumeration of the input space, on two solvers."""

from __future__ import annotations

import itertools

import numpy as np

from verifriend.bnn.encode import encode
from verifriend.bnn.integer import IntBNN, random_int_bnn
from verifriend.bnn.solvers import make_backend
from verifriend.bnn.verify import replays, verify_dataset


def _attackable(nets: list[IntBNN], lo, hi, label: int) -> bool:
    """Enumerate every level vector in the box (the oracle)."""
    ranges = [range(a, b + 1) for a, b in zip(lo, hi, strict=True)]
    for q in itertools.product(*ranges):
        q = np.array(q)
        if len(nets) == 1:
            if nets[0].misclassified(q, label):
                return True
        else:
            preds = []
            for net in nets:
                s = net.output.scores(net.hidden(q))
                firsts = [c for c in range(net.num_classes) if all(
                    _beats(net, s, c, u) for u in range(net.num_classes) if u != c)]
                preds.append(set(firsts))
            common = set.intersection(*preds) - {label}
            if common:
                return True
    return False


def _beats(net, s, c, u):
    sign, m = net.output.beats(c, u)
    return (sign > 0) if m is None else sign * int(s[c] - s[u]) >= m


def _native():
    # the extension is built by every `pip install`, so a missing one fails here, not skips
    return make_backend("native")


def test_thermometer_orders_every_bit():
    net = random_int_bnn(np.random.default_rng(0), [2, 3, 2], levels=4)
    enc = encode(net)
    order = {tuple(sorted(c)) for c in enc.formula.clauses if len(c) == 2}
    for j in range(2):
        for k in range(3):
            t_k, t_next = int(enc.thermometer[j, k]), int(enc.thermometer[j, k + 1])
            assert tuple(sorted([-t_next, t_k])) in order


def test_1000_random_queries_native_pysat_and_enumeration_agree():
    rng = np.random.default_rng(2026)
    native = _native()
    pysat = make_backend("pysat-gluecard4")
    cnf = make_backend("pysat-totalizer-minisat22")
    counts = {"sat": 0, "unsat": 0}
    queries = 0
    while queries < 1000:
        levels = int(rng.integers(1, 4))
        n_in = int(rng.integers(2, 6))
        widths = [n_in] + [int(rng.integers(2, 7)) for _ in range(rng.integers(1, 3))] + [3]
        net = random_int_bnn(rng, widths, levels=levels)
        enc = encode(net)
        for b in (native, pysat, cnf):
            b.load(enc.formula)
        for _ in range(10):
            x = rng.integers(0, levels + 1, size=n_in) / levels
            eps = float(rng.choice([0.0, 0.2, 0.5, 1.0]))
            label = int(rng.integers(0, 3))
            lo, hi = enc.level_box(x, eps)
            assume = enc.assumptions(lo, hi, label)
            truth = _attackable([net], lo, hi, label)
            verdicts = []
            for b in (native, pysat, cnf):
                r = b.solve(assume)
                verdicts.append(r.status)
                if r.status == "sat":
                    assert replays(enc, r.model, x, label, eps), b.name
            assert verdicts == ["sat" if truth else "unsat"] * 3, (verdicts, truth)
            counts["sat" if truth else "unsat"] += 1
            queries += 1
    print("queries", queries, counts)
    assert min(counts.values()) >= 200  # both answers are exercised


def test_ensemble_with_reject_matches_enumeration():
    rng = np.random.default_rng(7)
    native = _native()
    seen = set()
    for _ in range(60):
        nets = [random_int_bnn(rng, [3, 4, 3], levels=2) for _ in range(2)]
        enc = encode(nets)
        native.load(enc.formula)
        x = rng.integers(0, 3, size=3) / 2
        label = int(rng.integers(0, 3))
        lo, hi = enc.level_box(x, 0.5)
        r = native.solve(enc.assumptions(lo, hi, label))
        truth = _attackable(nets, lo, hi, label)
        assert r.status == ("sat" if truth else "unsat")
        if r.status == "sat":
            assert replays(enc, r.model, x, label, 0.5)
        seen.add(r.status)
    assert seen == {"sat", "unsat"}


def test_verify_dataset_counts_and_replays():
    rng = np.random.default_rng(3)
    net = random_int_bnn(rng, [6, 8, 6, 4], levels=3)
    images = rng.integers(0, 4, size=(40, 6)) / 3
    labels = net.predict(net.quantize(images))
    labels[:5] = (labels[:5] + 1) % 4  # five wrong labels: misclassified, never queried
    s = verify_dataset(net, _native(), images, labels, eps=0.34)
    d = s.as_dict()
    assert d["misclassified"] >= 5
    assert d["replay_failed"] == 0 and d["unknown"] == 0
    assert d["robust"] + d["attack"] + d["misclassified"] == 40
    for v in s.verdicts[5:]:
        q = net.quantize(images[v.index])
        lo, hi = encode(net).level_box(images[v.index], 0.34)
        if v.verdict != "misclassified":
            assert (v.verdict == "attack") == _attackable([net], lo, hi, v.label)
        else:
            assert net.misclassified(q, v.label)
