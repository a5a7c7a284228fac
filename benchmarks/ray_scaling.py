"""One verification campaign in one process and on 1, 2, ... Ray workers: wall times, ratios,
and whether the verdicts agree.

The campaign is `verifriend verify` (:func:`verifriend.app.campaign.campaign`) on the same
properties each time, each run into a fresh results file: in this process with one thread
(what each Ray worker gets) and with PyTorch's default threads, then with ``--ray`` on a
local Ray instance of W worker slots for each W of ``--workers``. Ray's start is timed apart
from the campaign; the load average before each run is printed (other jobs on the machine
slow the runs they overlap). Verdicts are compared per property with the first run's: a
property decided (sat/unsat) differently is a bug (exit 1); one that timed out in one run
and was decided in another is timing, and counted.

    python benchmarks/ray_scaling.py                      # the VNN paper's 2x50 net, 100 properties
    python benchmarks/ray_scaling.py --indices 0:40 --workers 1 2
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from verifriend.app.campaign import campaign, read_results
from verifriend.app.settings import CampaignSettings, parse_indices

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT.parent / "shared" / "vnnlp" / "mnist_relu_2_50.onnx"
DECIDED = ("sat", "unsat")


def run(settings: CampaignSettings) -> tuple[float, dict[int, str]]:
    """Wall seconds of the campaign, and its verdicts by test index."""
    print(f"load average {os.getloadavg()[0]:.1f} before: ", end="", flush=True)
    start = time.perf_counter()
    campaign(settings, progress=False)
    wall = time.perf_counter() - start
    return wall, {ln["index"]: ln["status"] for ln in read_results(settings.out)[1]}


def on_ray(settings: CampaignSettings, workers: int) -> tuple[float, float, dict[int, str]]:
    """Ray's start-up seconds, then :func:`run` on a local instance of ``workers`` slots."""
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False,
             logging_level=logging.ERROR, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    try:
        boot = time.perf_counter() - start
        return (boot, *run(settings))
    finally:
        ray.shutdown()


def single(settings: CampaignSettings, threads: int) -> tuple[float, dict[int, str]]:
    """:func:`run` in this process with ``threads`` PyTorch threads (0: its default)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return run(settings)
    finally:
        torch.set_num_threads(before)


def compare(name: str, base: dict[int, str], other: dict[int, str]) -> tuple[int, list[str]]:
    """(decided differently, timing differences) of ``other`` against ``base``."""
    wrong, timing = 0, []
    for i, s in base.items():
        t = other.get(i)
        if t == s:
            continue
        if s in DECIDED and t in DECIDED:
            wrong += 1
            print(f"!!!!! {name}: test index {i} is {t}, single-process {s}", file=sys.stderr)
        else:
            timing.append(f"{i}: {s} -> {t}")
    return wrong, timing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--eps", type=float, default=0.03)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per property")
    ap.add_argument("--indices", default="0:100", help="test images START:STOP")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--single-threads", type=int, nargs="+", default=[1, 0],
                    help="PyTorch threads of the single-process runs (0: its default)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp:
        def settings(name: str, ray: str | None) -> CampaignSettings:
            return CampaignSettings(args.model, args.eps, args.timeout, out=Path(tmp) / name,
                                    dataset=args.dataset,
                                    indices=parse_indices(args.indices, "--indices"), ray=ray)

        print(f"{args.model.name} on {args.dataset}, eps {args.eps:g}, timeout {args.timeout:g} s, "
              f"test images {args.indices}", flush=True)
        base, rows, wrong = None, [], 0
        for n in args.single_threads:
            wall, got = single(settings(f"single{n}.jsonl", None), n)
            name = f"single process, {n or 'default'} thread(s)"
            wrong += _row(name, wall, 0.0, got, base)
            base = base or got
            rows.append((name, wall))
        for w in args.workers:
            boot, wall, got = on_ray(settings(f"ray{w}.jsonl", "local"), w)
            name = f"Ray, {w} worker(s)"
            wrong += _row(name, wall, boot, got, base)
            base = base or got
            rows.append((name, wall))
    for k, (name, wall) in enumerate(rows[1:], 1):  # speed-ups over the runs before it
        print(f"{name}: " + ", ".join(f"{other / wall:.2f}x faster than {o}"
                                     for o, other in rows[:k]))
    return 1 if wrong else 0


def _row(name: str, wall: float, boot: float, got: dict[int, str],
         base: dict[int, str] | None) -> int:
    """Print a run's line; the number of properties it decided unlike ``base``."""
    counts = {s: list(got.values()).count(s) for s in sorted(set(got.values()))}
    start = f"   (+ {boot:.1f} s Ray start)" if boot else ""
    bad, timing = (0, []) if base is None else compare(name, base, got)
    vs = "" if base is None else f"; vs the first: {bad} decided differently, {len(timing)} " \
        "timeout <-> decided"
    print(f"{name:34s} {wall:7.1f} s{start}   {counts}{vs}", flush=True)
    return bad


if __name__ == "__main__":
    sys.exit(main())
