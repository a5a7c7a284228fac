"""The same BNN verification queries on every solver backend, side by side, with ratios.

    python benchmarks/bnn_solvers.py MODEL.pt [MODEL.pt ...] --eps 0.1 --images 100 \
        [--backends native pysat-gluecard4 cpsat ...] [--timeout 2] [--json]

Each model (written by `verifriend bnn train`) is exported to its integer form and encoded once;
every backend loads that formula once and answers one query per correctly classified test
image (assumptions only). Times are solve times; a query at its time limit counts at the
limit, so ratios against a backend with unknowns are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from verifriend.bnn.bench import Suite, run_suite, summarize
from verifriend.bnn.export import export_integer, load_bnn
from verifriend.bnn.solvers import available_backends
from verifriend.bnn.workflow import load_data

DEFAULT_BACKENDS = ["native", "pysat-gluecard4", "pysat-minicard", "cpsat", "z3",
                    "pysat-totalizer-cadical153", "pysat-seqcounter-minisat22",
                    "pysat-sortnetwrk-cadical153", "exact"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--eps", type=float, nargs="+", default=[0.1])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--dataset", default=None, help="default: the one each model was trained on")
    p.add_argument("--backends", nargs="+", default=None)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    have = set(available_backends())
    wanted = a.backends or DEFAULT_BACKENDS
    backends = [b for b in wanted if b in have]
    log = (lambda s: print(s, file=sys.stderr)) if a.json else print
    missing = [b for b in wanted if b not in have]
    if missing:
        print(f"not available here, left out: {', '.join(missing)}", file=sys.stderr)
    if not backends:
        p.error("none of the chosen backends is available")
    suites = []
    for path in a.models:
        model = load_bnn(path)
        dataset = a.dataset or model.meta.get("dataset")
        if not dataset:
            p.error(f"{path} does not record its data set; pass --dataset")
        _, _, xte, yte, _, _ = load_data(dataset)
        net = export_integer(model)
        for eps in a.eps:
            suite = Suite(f"{path}@{eps:g}", net, xte[:a.images].numpy().astype(np.float64),
                          yte[:a.images].numpy(), eps)
            suites.append(run_suite(suite, backends, a.timeout, progress=log))
    out = summarize(suites)
    if a.json:
        slim = {"agree": out["agree"], "backends": out["backends"]}
        print(json.dumps(slim, indent=1))
    else:
        print(f"\nagree: {out['agree']}")
        for name, b in sorted(out["backends"].items(), key=lambda kv: kv[1]["total_s"]):
            print(f"{name:<30} total {b['total_s']:9.3f} s  mean {1000 * b['mean_s']:9.2f} ms  "
                  f"median {1000 * b['median_s']:8.2f} ms  max {1000 * b['max_s']:9.1f} ms  "
                  f"unknown {b['unknown']:3d}  x native {b.get('ratio_to_native', 0):8.1f}")
    return out


if __name__ == "__main__":
    main()
