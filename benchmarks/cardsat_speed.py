"""Speed check of the native solver (verifriend._cardsat) against PySAT and CP-SAT backends.

Not a test: prints CPU and wall times. Two parts:

- pigeonhole n+1 -> n with one "at least 2" card per hole (native), the same as at-most-1
  constraints on Gluecard 4, and as sequential-counter CNF on CaDiCaL 1.5.3;
- BNN-like queries: random binarized networks whose thresholds sit at the median
  pre-activation (so neurons are balanced, unlike `random_int_bnn`), encoded by
  `verifriend.bnn.encode`, one query per input (the inputs with the largest logit margins),
  answered by each backend on one loaded formula.

    python benchmarks/cardsat_speed.py --php 8 9 --suites mid-u small --backends native,pysat-gluecard4
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np

from verifriend import _cardsat
from verifriend.bnn.encode import encode
from verifriend.bnn.integer import IntBNN, IntLayer, IntOutput
from verifriend.bnn.solvers import make_backend
from verifriend.bnn.solvers.native import NativeBackend

# widths [inputs, hidden..., classes], thermometer levels, weight density, queries, eps
SUITES = {
    "mid-u": ([196, 100, 100, 10], 4, 0.3, 20, 0.01),
    "mid-u2": ([196, 100, 100, 10], 4, 0.3, 20, 0.015),
    "mnist-u": ([784, 100, 100, 10], 4, 0.1, 15, 0.01),
    "small": ([64, 64, 64, 10], 4, 0.5, 20, 0.15),
    "deep": ([100, 50, 50, 50, 10], 4, 0.4, 20, 0.15),
}


def pigeonhole(n: int, backend: str) -> tuple[float, object]:
    def var(p: int, h: int) -> int:
        return p * n + h + 1

    clauses = [[var(p, h) for h in range(n)] for p in range(n + 1)]
    holes = [[var(p, h) for p in range(n + 1)] for h in range(n)]
    nv = (n + 1) * n
    if backend == "native":
        s = _cardsat.Solver()
        s.reserve_vars(nv)
        s.add_clauses(clauses)
        for i, lits in enumerate(holes):
            s.add_card(nv + 1 + i, lits, 2)
            s.add_clause([-(nv + 1 + i)])
        t0 = time.process_time()
        s.solve()
        return time.process_time() - t0, s.stats()["conflicts"]
    from pysat.card import CardEnc, EncType
    from pysat.solvers import Solver

    if backend == "gluecard4":
        s = Solver(name="gluecard4", bootstrap_with=clauses)
        for lits in holes:
            s.add_atmost(lits, 1)
    else:
        cnf, top = list(clauses), nv
        for lits in holes:
            enc = CardEnc.atmost(lits, 1, top_id=top, encoding=EncType.seqcounter)
            top = max(top, enc.nv)
            cnf += enc.clauses
        s = Solver(name="cadical153", bootstrap_with=cnf)
    t0 = time.process_time()
    s.solve()
    return time.process_time() - t0, s.accum_stats().get("conflicts")


def balanced_bnn(rng: np.random.Generator, widths: list[int], levels: int, density: float):
    x = rng.integers(0, levels + 1, size=(400, widths[0]))
    layers, a = [], x
    for n_in, n_out in itertools.pairwise(widths[:-1]):
        w = rng.choice([-1, 1], size=(n_out, n_in)) * (rng.random((n_out, n_in)) < density)
        z = a @ w.T
        thr = np.median(z, axis=0).astype(np.int64) + rng.integers(-1, 2, size=n_out)
        layers.append(IntLayer(w, thr))
        a = (z >= thr).astype(np.int64)
    n_in, n_cls = widths[-2], widths[-1]
    w = rng.choice([-1, 1], size=(n_cls, n_in)) * (rng.random((n_cls, n_in)) < density)
    out = IntOutput(w, scale=0.1, bias=rng.normal(0, 0.3, n_cls))
    return IntBNN((widths[0],), 1.0 / levels, levels, layers, out)


def suite(seed: int, widths, levels, density, n_img, eps):
    rng = np.random.default_rng(seed)
    net = balanced_bnn(rng, widths, levels, density)
    enc = encode(net)
    cands = []
    for _ in range(3000):
        x = rng.random(widths[0])
        q = net.quantize(x)
        logits = net.logits(q)
        label = int(np.argmax(logits))
        if not net.misclassified(q, label):
            cands.append((logits[label] - np.max(np.delete(logits, label)), x, label))
    cands.sort(key=lambda t: -t[0])
    queries = [enc.assumptions(*enc.level_box(x, eps), label) for _, x, label in cands[:n_img]]
    return enc, queries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--php", type=int, nargs="*", default=[8, 9])
    ap.add_argument("--suites", nargs="*", default=list(SUITES))
    ap.add_argument("--backends", default="native,native-prio,pysat-gluecard4,cpsat")
    ap.add_argument("--time-limit", type=float, default=5.0)
    args = ap.parse_args()
    for n in args.php:
        row = [f"{b} {pigeonhole(n, b)[0]:.3f}s" for b in ("native", "gluecard4", "cadical153")]
        print(f"PHP {n + 1}->{n} (cpu): " + "  ".join(row), flush=True)
    for name in args.suites:
        enc, queries = suite(0, *SUITES[name])
        f = enc.formula
        print(
            f"{name}: {f.num_vars} vars, {len(f.cards)} cards, {len(f.clauses)} clauses, "
            f"{len(queries)} queries",
            flush=True,
        )
        for bname in args.backends.split(","):
            if bname == "native-prio":
                backend = NativeBackend(priority_vars=enc.thermometer.reshape(-1).tolist())
            else:
                backend = make_backend(bname)
            backend.load(f)
            cpu, wall, verdicts = [], [], []
            for a in queries:
                c0 = time.process_time()
                r = backend.solve(a, args.time_limit)
                cpu.append(time.process_time() - c0)
                wall.append(r.time_s if r.status != "unknown" else args.time_limit)
                verdicts.append({"sat": "s", "unsat": "U", "unknown": "?"}[r.status])
            backend.close()
            print(
                f"  {bname:<28} cpu median {1000 * statistics.median(cpu):8.2f} ms "
                f"total {sum(cpu):7.2f} s | wall total {sum(wall):7.2f} s  {''.join(verdicts)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
