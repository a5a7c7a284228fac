"""Side-by-side solver benchmark on BNN verification queries: same encoding, same assumptions.

Each suite (a network, images, labels, a radius) is encoded once; every backend loads that
formula once and answers one query per image. Times are solve times (the build and load are
reported apart); verdicts must agree wherever two backends both decided.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from verifriend.bnn.encode import encode
from verifriend.bnn.integer import IntBNN
from verifriend.bnn.solvers import make_backend
from verifriend.bnn.verify import replays


@dataclass
class Suite:
    name: str
    net: IntBNN
    images: np.ndarray  # [n, ...] values in [0, 1]
    labels: np.ndarray
    eps: float


def _queries(enc, suite: Suite) -> list[tuple[int, list[int]]]:
    """(image index, assumptions) for the images the network classifies correctly."""
    out = []
    for i, (x, y) in enumerate(zip(suite.images, suite.labels, strict=True)):
        if not suite.net.misclassified(suite.net.quantize(x), int(y)):
            lo, hi = enc.level_box(x, suite.eps)
            out.append((i, enc.assumptions(lo, hi, int(y))))
    return out


def run_suite(
    suite: Suite,
    backends: list[str],
    time_limit: float,
    *,
    fresh_native: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run one suite on every backend; returns per-backend times and verdicts.

    With fresh_native, the native solver also answers each query on a newly loaded copy
    (no learned clauses carried over), to measure what reusing one encoding buys.
    """
    enc = encode(suite.net)
    queries = _queries(enc, suite)
    result: dict = {"name": suite.name, "eps": suite.eps, "images": len(suite.images),
                    "queries": len(queries), "build_s": enc.build_s,
                    "vars": enc.formula.num_vars, "cards": len(enc.formula.cards),
                    "clauses": len(enc.formula.clauses), "backends": {}}
    names = list(backends)
    if fresh_native and "native" in names:
        names.append("native-fresh")
    for name in names:
        fresh = name == "native-fresh"
        backend = make_backend("native" if fresh else name)
        t0 = time.perf_counter()
        backend.load(enc.formula)
        load_s = time.perf_counter() - t0
        times, verdicts, bad_models = [], [], 0
        for i, assume in queries:
            if fresh:
                backend.close()
                backend = make_backend("native")
                t0 = time.perf_counter()
                backend.load(enc.formula)
                load_s += time.perf_counter() - t0
            r = backend.solve(assume, time_limit)
            times.append(r.time_s)
            verdicts.append(r.status)
            if r.status == "sat" and not replays(
                enc, r.model, suite.images[i], int(suite.labels[i]), suite.eps
            ):
                bad_models += 1
        backend.close()
        t = np.array(times) if times else np.zeros(1)
        result["backends"][name] = {
            "load_s": load_s, "total_s": float(t.sum()), "mean_s": float(t.mean()),
            "median_s": float(np.median(t)), "max_s": float(t.max()),
            "unknown": verdicts.count("unknown"), "sat": verdicts.count("sat"),
            "unsat": verdicts.count("unsat"), "bad_models": bad_models, "verdicts": verdicts,
            "times": times,
        }
        if progress is not None:
            b = result["backends"][name]
            progress(f"{suite.name}: {name:<28} total {b['total_s']:8.3f} s  "
                     f"median {1000 * b['median_s']:8.2f} ms  unknown {b['unknown']}")
    result["agree"] = _agree(result["backends"])
    return result


def _agree(backends: dict) -> bool:
    per_query = zip(*(b["verdicts"] for b in backends.values()), strict=True)
    if any(b["bad_models"] for b in backends.values()):
        return False
    return all(len({v for v in q if v != "unknown"}) <= 1 for q in per_query)


def summarize(suites: list[dict]) -> dict:
    """Totals over suites per backend, the agreement flag and ratios to the native solver.

    A backend's total counts each unknown query at its time limit, so its ratio is a lower
    bound of the real one.
    """
    names = list(suites[0]["backends"]) if suites else []
    backends = {}
    for name in names:
        times = np.array([x for s in suites for x in s["backends"][name]["times"]])
        backends[name] = {
            "total_s": float(times.sum()) if len(times) else 0.0,
            "mean_s": float(times.mean()) if len(times) else 0.0,
            "median_s": float(np.median(times)) if len(times) else 0.0,
            "max_s": float(times.max()) if len(times) else 0.0,
            "unknown": int(sum(s["backends"][name]["unknown"] for s in suites)),
            "queries": len(times),
        }
    native = backends.get("native", {}).get("total_s")
    if native:
        for b in backends.values():
            b["ratio_to_native"] = b["total_s"] / native
    return {"agree": all(s["agree"] for s in suites), "backends": backends, "suites": suites}

