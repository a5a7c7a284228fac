"""Soundness campaign: random small networks through the VNN-COMP path, checked by exact oracles.

For every network index ``i`` (deterministic from ``--seed`` and ``i``) the campaign

1. draws a small network (fully connected or convolutional; ReLU, sigmoid, tanh or mixed;
   1-3 hidden layers) and writes it as a real ONNX file (Gemm, MatMul + Add, Conv, Relu,
   Sigmoid, Tanh, Flatten / Reshape), checking onnxruntime against its own float64 numpy
   forward pass on a few points;
2. draws a property: Linf robustness around a point (``robust``), or a general one
   (``general``: OR of ANDs of linear output constraints, sometimes over an OR of input
   boxes); boxes wide, narrow, 1e-6 wide or with degenerate dimensions; written as a real
   VNN-LIB file;
3. asks the oracle for the optimum of every (input box, clause) pair: the largest value over
   the box of ``min_k (a_k . Y - b_k)`` (the clause is reachable iff it is >= 0). The
   oracle is independent of verifriend: for ReLU networks a big-M MILP built here from the
   numpy weights (interval bounds in float64, widened) and solved by HiGHS twice, with and
   without presolve (the two optima must agree, and 64 sampled points must not beat the
   bound; else the pair is unchecked); for networks with
   sigmoid / tanh (at most 3 free input dimensions) a vectorized float64 branch and bound
   over the input box with interval and mean-value bounds, which either proves a bound or
   evaluates a point. In the ``tie-sat`` / ``tie-unsat`` modes the thresholds (or, for
   robustness, the output biases) are then moved so that the property is violated, or
   holds, by a tiny relative margin (1e-7 .. 1e-2 of the output scale);
4. runs ``verifriend.app.vnncomp.run_instance(onnx, vnnlib, timeout)`` with a short
   timeout (0.4-2 s, times ``--timeout-scale``), writes the result with ``format_result``
   and reads it back with ``parse_result`` (the round trip must be exact);
5. resolves the verdict: an ``unsat`` is checked against the oracle; a ``sat``
   counterexample must lie in one of the spec's boxes (float64, no tolerance) and its output
   under onnxruntime (float32 input, as the model runs) must violate the spec (compared in
   float64); a counterexample that violates the spec in float64 but not in onnxruntime's
   float32 is counted as its own kind (rounding margin), not hidden.

WRONG verdicts: an ``unsat`` where the oracle evaluated a point in the unsafe region, a
``sat`` whose counterexample is outside the boxes or does not replay, a result file that
does not round-trip, an exception from the verifier, or a replayed ``sat`` where the oracle
proved ``unsat`` (one of the two is wrong). Each is saved as ``<out>/wrong/<index>/``
(``net.onnx``, ``spec.vnnlib``, ``details.json``) and makes the exit code 1. Where the
oracle's optimum lies within its own tolerance of the threshold the instance is a ``tie``
(never counted as right or wrong); where the branch and bound runs out of budget it is
``unchecked``.

The log ``<out>/results.jsonl`` has one line per network index; rerunning the same command
skips finished indices (a truncated last line is dropped), so an interrupted campaign
resumes. The summary (counts by network kind and property kind, by resolution, wall time,
throughput) covers every logged index of the requested range.

Example (10,000 networks on all cores, resumable)::

    .venv/bin/python benchmarks/soundness_campaign.py --networks 10000 --out /tmp/soundness

The code lives in the package ``benchmarks/soundness/`` (``netgen``, ``props``, ``oracle``,
``campaign``); this script is its command line and re-exports its public names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # ``soundness`` (also for spawned workers, which unpickle by name)

from soundness.campaign import (
    CONFIG_NAME,
    LOG_NAME,
    format_summary,
    read_log,
    run_campaign,
    run_one,
    summarize,
)
from soundness.netgen import (
    ACT,
    ONNX_ACT,
    Net,
    OrtNet,
    forward,
    make_net,
    onnx_bytes,
)
from soundness.oracle import (
    BNB_BOXES,
    BNB_SECONDS,
    MILP_SECONDS,
    MILP_TOL,
    PAD,
    ROUND_TOL,
    TINY,
    Instance,
    PairOpt,
    bnb_max,
    interval_bounds,
    make_instance,
    milp_max,
    oracle_answer,
)
from soundness.props import Prop, make_prop, vnnlib_text

__all__ = [
    "ACT", "BNB_BOXES", "BNB_SECONDS", "CONFIG_NAME", "LOG_NAME", "MILP_SECONDS", "MILP_TOL",
    "ONNX_ACT", "PAD", "ROUND_TOL", "TINY", "Instance", "Net", "OrtNet", "PairOpt", "Prop",
    "bnb_max", "format_summary", "forward", "interval_bounds", "main", "make_instance",
    "make_net", "make_prop", "milp_max", "onnx_bytes", "oracle_answer", "read_log",
    "run_campaign", "run_one", "summarize", "vnnlib_text",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: .venv/bin/python benchmarks/soundness_campaign.py --networks 10000 "
               "--out /tmp/soundness  (rerun the same command to resume)")
    ap.add_argument("--networks", type=int, default=200, help="how many network indices")
    ap.add_argument("--start", type=int, default=0, help="first network index")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--out", default="soundness-out", help="log and saved wrong verdicts")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed")
    ap.add_argument("--timeout-scale", type=float, default=1.0,
                    help="multiplies every instance's timeout (0.4-2 s)")
    a = ap.parse_args(argv)
    if a.networks < 1 or a.start < 0 or (a.workers is not None and a.workers < 1) \
            or not a.timeout_scale > 0:
        ap.error("--networks and --workers must be >= 1, --start >= 0, --timeout-scale > 0")
    s = run_campaign(a.networks, start=a.start, workers=a.workers, out=a.out, seed=a.seed,
                     timeout_scale=a.timeout_scale)
    print()
    print(format_summary(s))
    new = s["new"]
    print(f"wall time {s['wall_s']:.1f} s for {new} new networks on {s['workers']} workers "
          f"({new / max(s['wall_s'], 1e-9):.2f} networks/s)")
    for r in s["wrong"] + s["errors"]:
        print(f"!! index {r['index']} ({r.get('net')}): {r['resolution']}: saved in "
              f"{r.get('saved')}")
    return 1 if s["wrong"] or s["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
