"""One encoding reused across images against a fresh native solver per image.

    python benchmarks/bnn_reuse.py runs/bnn-bench/digits.pt --eps 0.05 --orders 8
    python benchmarks/bnn_reuse.py MODEL.pt --eps 0.1 --images 300 \
        --variants "default;reset_after=0;reset_between=7"

For each correctly classified test image (the first --images), one query (the eps box and the
label as assumptions) on the native solver. `fresh`: a new solver loaded for every query (its
work does not depend on the order, its time is measured again per order for the noise).
`reuse`: one loaded solver answers every query in turn, keeping what it learned that holds
without the assumptions (VSIDS scores, saved phases, units, clauses); each --variants entry is
one such row with solver options set (`keep_base_max=K`: also the clauses learned from at most
K base-level literals, those literals added; `reset_between=B`: each query starts from the
first query's phases (bit 1), activities (2), restart averages (4); `reset_after=N`: a query
past N conflicts falls back to those once; default 300, 0 keeps them warm). What a reused
solver learns depends on the order of the queries, so each reuse row runs over --orders
shuffles; the table prints solve time (load not counted), conflicts, and the ratio of each mean
to fresh. Verdicts must agree across rows.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import numpy as np

from verifriend.app.bnn_verify import load_with_test_set
from verifriend.bnn.encode import encode
from verifriend.bnn.export import export_integer
from verifriend.bnn.formula import CardFormula
from verifriend.bnn.solvers.native import NativeBackend


def queries(model_path: Path, eps: float, images: int) -> tuple[object, list[list[int]]]:
    model, _, xte, yte = load_with_test_set(model_path)
    net = export_integer(model)
    enc = encode(net)
    out = []
    for x, y in zip(xte[:images].numpy().astype(np.float64), yte[:images].numpy(), strict=True):
        if net.misclassified(net.quantize(x), int(y)):
            continue
        lo, hi = enc.level_box(x, eps)
        out.append(enc.assumptions(lo, hi, int(y)))
    return enc.formula, out


def parse_variant(text: str) -> dict[str, float]:
    """"default" or "name=value,name=value" (native solver options)."""
    if text.strip() in ("", "default"):
        return {}
    options = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"variant item {item!r} is not name=value")
        options[name.strip()] = float(value)
    return options


def run(formula, qs: list[list[int]], order: list[int], options: dict | None, timeout: float):
    """Total solve time, conflicts and verdicts (by query index); options None: fresh solvers."""
    fresh = options is None
    options = options or {}
    backend = NativeBackend(options=options)
    backend.load(formula)
    total, conflicts, verdicts = 0.0, 0, {}
    for i in order:
        if fresh:
            backend = NativeBackend(options=options)
            backend.load(formula)
        result = backend.solve(qs[i], timeout)
        total += result.time_s
        conflicts += result.stats["conflicts"]
        verdicts[i] = result.status
    return total, conflicts, verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--eps", type=float, required=True)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--orders", type=int, default=5, help="shuffled query orders per reuse row")
    ap.add_argument("--variants", default="default",
                    help='reuse rows, ";"-separated: "default" or "option=value,..." each')
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args(argv)
    if not args.model.exists():
        print(f"no such model: {args.model}", file=sys.stderr)
        return 2
    try:
        variants = {f"reuse {v.strip()}": parse_variant(v) for v in args.variants.split(";")}
        for options in variants.values():
            NativeBackend(options=options).load(CardFormula(1))
    except ValueError as exc:
        print(f"bad --variants: {exc}", file=sys.stderr)
        return 2
    formula, qs = queries(args.model, args.eps, args.images)
    if not qs:
        print(f"none of the first {args.images} test images is classified correctly",
              file=sys.stderr)
        return 2
    print(f"{args.model}: {len(qs)} queries, eps {args.eps}, {args.orders} orders")
    rows: dict[str, list[tuple[float, int]]] = {}
    reference = None
    rows_options = {"fresh": None, **variants}
    for seed in range(args.orders):
        order = list(range(len(qs)))
        random.Random(seed).shuffle(order)
        for name, options in rows_options.items():
            total, conflicts, verdicts = run(formula, qs, order, options, args.timeout)
            answered = {i: v for i, v in verdicts.items() if v != "unknown"}
            reference = reference or answered
            clash = [i for i in answered if i in reference and reference[i] != answered[i]]
            if clash:
                print(f"DISAGREE: {name} on queries {clash[:10]}", file=sys.stderr)
                return 1
            rows.setdefault(name, []).append((total, conflicts))
            print(f"  order {seed}: {name:32} {total:8.3f} s {conflicts:9d} conflicts", flush=True)
    fresh_t = statistics.mean(t for t, _ in rows["fresh"])
    fresh_c = statistics.mean(c for _, c in rows["fresh"])
    print(f"\n{'row':32} {'mean s':>8} {'min s':>8} {'max s':>8} {'conflicts':>10} "
          f"{'t/fresh':>8} {'c/fresh':>8}")
    for name, vals in rows.items():
        ts = [t for t, _ in vals]
        cs = statistics.mean(c for _, c in vals)
        c_ratio = f"{cs / fresh_c:8.2f}" if fresh_c else f"{'-':>8}"  # no conflicts at all
        print(f"{name:32} {statistics.mean(ts):8.3f} {min(ts):8.3f} {max(ts):8.3f} {cs:10.0f} "
              f"{statistics.mean(ts) / max(fresh_t, 1e-9):8.2f} {c_ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
