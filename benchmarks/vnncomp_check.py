"""Run verifriend's complete verifier on the VNN-COMP 2021 benchmarks with known answers.

For every instance of the chosen benchmark folders (../shared/vnncomp/<name>/instances.csv):
our verdict and time against the ground truth, and a per-benchmark table beside
alpha-beta-CROWN's 2021 figures from the same csv. A sat verdict's counterexample is
re-checked independently with onnxruntime. Exit code 1 if any answer is wrong.

Each instance runs the way a VNN-COMP harness runs it: a new `verifriend vnncomp` process
(interpreter start-up and imports included), its verdict read back from the result file it
wrote. The wall clock of that process against the instance's timeout is its overrun; the
summary prints the largest one and every instance beyond the allowance max(1 s, 5 % of the
timeout) (exit code 3 if any, when no answer is wrong). `--in-process` verifies in this
process instead (no start-up; for debugging the verifier).

`--ray [ADDRESS]` runs the instances on Ray workers (a local Ray instance with one worker per
core, or the cluster at ADDRESS), each still in its own `verifriend vnncomp` process (or in
the worker's, with `--in-process`); this script prints and appends each record to --jsonl as
its instance finishes. `--shard I/N` runs only the instances at positions p % N == I of the
list (give each shard its own --jsonl).

    python benchmarks/vnncomp_check.py --benchmarks mnistfc --limit 5 --jsonl runs/mnistfc.jsonl
    python benchmarks/vnncomp_check.py --timeout-scale 0.1 --jsonl runs/all-0.1.jsonl
    python benchmarks/vnncomp_check.py --benchmarks acasxu --ray --jsonl runs/acasxu.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from verifriend.app.config import verifier_config
from verifriend.app.vnncomp import Instance, read_instances, run_instance
from verifriend.errors import UserError

ROOT = Path(__file__).resolve().parents[2] / "shared" / "vnncomp"
BENCHMARKS = ("acasxu", "mnistfc", "verivital", "test")
DECIDED = ("sat", "unsat")


def check_counterexample(inst: Instance, x: np.ndarray) -> dict:
    """Re-check a counterexample without the verifier: box membership and onnxruntime.

    ``ok`` iff ``x`` lies in one of the spec's boxes (``lower <= x <= upper``, no tolerance)
    and onnxruntime's output on ``x`` (cast to float32, the model's type; the output
    compared in float64) lies in that box's unsafe region. ``x32_in_box`` says whether the
    float32 input that onnxruntime actually evaluated is in the box too (reported only).
    """
    import onnxruntime as ort
    import torch

    from verifriend.specs.vnnlib import read_vnnlib

    specs = read_vnnlib(inst.vnnlib)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    sess = ort.InferenceSession(str(inst.onnx), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x32 = x.astype(np.float32)
    y = sess.run(None, {inp.name: x32.reshape(shape)})[0].astype(np.float64).reshape(-1)
    out = {"ok": False, "in_box": False, "x32_in_box": False, "violates": False,
           "y_onnxruntime": y.tolist()}
    for spec in specs:
        if spec.n_inputs != x.size:
            out["why"] = f"the counterexample has {x.size} inputs, the spec {spec.n_inputs}"
            return out
        lo, hi = spec.lower.numpy(), spec.upper.numpy()
        if not bool(np.all((lo <= x) & (x <= hi))):
            continue
        out["in_box"] = True
        out["x32_in_box"] = bool(np.all((lo <= x32) & (x32 <= hi)))
        if spec.is_violated(torch.from_numpy(y)):
            out["violates"] = out["ok"] = True
            return out
    out["why"] = ("onnxruntime's output on x does not violate the spec" if out["in_box"]
                  else "x lies outside every input box of the spec")
    return out


def _key(inst: Instance) -> str:
    return f"{inst.benchmark}/{inst.onnx.name}/{inst.vnnlib.name}"


def allowance(timeout: float) -> float:
    """The overrun an instance may have beyond its timeout: max(1 s, 5 % of the timeout)."""
    return max(1.0, 0.05 * timeout)


# a process still running this long after its timeout is killed (and counted as overrun)
KILL_AFTER = 60.0


def run_process(inst: Instance, timeout: float, options: list[str] = (),
                device: str = "cpu") -> tuple[dict, tuple | None]:
    """Run `verifriend vnncomp` on ``inst`` in a new process, as a VNN-COMP harness does.

    Returns the record's fields (status, wall-clock time of the whole process, overrun)
    and the counterexample (x, y) read back from the result file, if any.
    """
    from verifriend.app.vnncomp import parse_result

    exe = Path(sys.executable).with_name("verifriend")
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "verifriend.cli"])
    with tempfile.TemporaryDirectory(prefix="vnncomp-check-") as tmp:
        out = Path(tmp) / "result.txt"
        cmd += ["vnncomp", str(inst.onnx), str(inst.vnnlib), "--timeout", repr(timeout),
                "--out", str(out)]
        for opt in options:
            cmd += ["--set", opt]
        if device != "cpu":
            cmd += ["--device", device]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout + KILL_AFTER)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        wall = time.monotonic() - start
        rec = {"time_s": wall, "overrun_s": wall - timeout, "returncode": proc.returncode}
        if proc.returncode != 0 or not out.exists():
            why = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            rec.update(status="error", error=why)
            return rec, None
        status, x, y = parse_result(out.read_text())
    rec.update(status=status, reported_s=_float((stdout.split() or ["", ""])[1]))
    return rec, (None if x is None else (x.numpy(), None if y is None else y.numpy()))


def run_one(inst: Instance, timeout_scale: float, in_process: bool = False,
            options: list[str] = (), device: str = "cpu") -> dict:
    """Verify one instance and classify the answer against the ground truth."""
    rec = _record(inst, timeout_scale, options)
    timeout = rec["timeout_s"]
    cex = None
    if in_process:
        try:
            v = run_instance(inst.onnx, inst.vnnlib, timeout,
                             config=verifier_config(None, list(options)) if options else None,
                             device=device)
            rec.update(status=v.status, time_s=v.time_s, stage=v.stage, domains=v.domains,
                       overrun_s=v.time_s - timeout)
            if v.counterexample is not None:
                cex = tuple(np.asarray(t.detach().cpu().double()).reshape(-1)
                            for t in v.counterexample)
        except Exception as e:  # noqa: BLE001 - one broken instance must not stop the run
            rec.update(status="error", time_s=None, error=f"{type(e).__name__}: {e}")
            if not isinstance(e, UserError):
                rec["traceback"] = traceback.format_exc()
    else:
        fields, cex = run_process(inst, timeout, options, device)
        rec.update(fields)
    truth = rec["truth"]
    if rec["status"] == "sat":
        if cex is None:
            rec["cex"] = {"ok": False, "why": "sat without a counterexample"}
        else:
            x, y = cex
            rec["cex"] = check_counterexample(inst, x)
            y_ort = np.asarray(rec["cex"].pop("y_onnxruntime"))
            if y is not None and y_ort.shape == y.shape:
                rec["cex"]["max_abs_y_diff"] = float(np.max(np.abs(y_ort - y), initial=0.0))
    status = rec["status"]
    if status not in DECIDED:
        rec["outcome"] = "unsolved"
    elif status == "sat" and not rec["cex"]["ok"]:
        rec["outcome"] = "wrong"
    elif truth in DECIDED:
        rec["outcome"] = "correct" if status == truth else "wrong"
    else:  # no tool decided it: a checked counterexample decides it, a proof stays unchecked
        rec["outcome"] = "correct" if status == "sat" else "unchecked"
    return rec


def _record(inst: Instance, timeout_scale: float, options: list[str]) -> dict:
    """The fields of an instance's record that do not depend on its run."""
    return {"key": _key(inst), "benchmark": inst.benchmark, "onnx": inst.onnx.name,
            "vnnlib": inst.vnnlib.name, "timeout_s": inst.timeout_s * timeout_scale,
            "truth": inst.verdict or "unknown",
            "abcrown2021_verdict": inst.extra.get("abcrown2021_verdict", ""),
            "abcrown2021_time_s": _float(inst.extra.get("abcrown2021_time_s")),
            "options": list(options)}


def _run_one_task(inst: Instance, timeout_scale: float, in_process: bool,
                  options: list[str], device: str = "cpu") -> dict:
    """A Ray task: :func:`run_one` with one thread (the workers share the cores)."""
    import torch

    torch.set_num_threads(1)
    return run_one(inst, timeout_scale, in_process, options, device)


def run_on_ray(address: str, todo: list[Instance], args, finish) -> None:
    """:func:`run_one` of every instance of ``todo`` on Ray workers; ``finish(record)`` each
    record in this process as its instance finishes. An instance whose worker died on every
    try gets an error record (run again by the next run with the same --jsonl)."""
    from verifriend.app.campaign_ray import (
        MAX_RETRIES,
        ray_session,
        stream_tasks,
        task_resources,
        worker_slots,
    )

    with ray_session(address) as ray:
        if __name__ != "__main__":  # imported (not run): the workers cannot import this file
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        task = ray.remote(_run_one_task).options(max_retries=MAX_RETRIES,
                                                 **task_resources(args.device))
        lost = stream_tasks(ray, task, [(i, args.timeout_scale, args.in_process, args.options,
                                         args.device) for i in todo],
                            lambda a, rec: finish(rec),
                            in_flight=2 * worker_slots(ray, args.device))
    for a in lost:
        finish({**_record(a[0], args.timeout_scale, args.options), "status": "error",
                "time_s": None, "outcome": "unsolved",
                "error": f"the Ray workers died on all {MAX_RETRIES + 1} tries"})


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N (argparse type)."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be I/N, e.g. 0/4, got '{text}'") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"must be I/N with 0 <= I < N, got '{text}'")
    return i, n


def _float(s) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def _load_jsonl(path: Path) -> dict[str, dict]:
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a killed run: that instance runs again
                if rec.get("status") != "error":  # errors run again: the bug may be fixed
                    done[rec["key"]] = rec
    return done


def _print_row(rec: dict, resumed: bool = False) -> None:
    t = "-" if rec["time_s"] is None else f"{rec['time_s']:.2f} s"
    extra = ""
    if "cex" in rec and not rec["cex"]["ok"]:
        extra = f"  counterexample rejected: {rec['cex'].get('why')}"
    elif "cex" in rec and not rec["cex"].get("x32_in_box", True):
        extra = "  (note: x rounded to float32 leaves the box)"
    if "error" in rec:
        extra += f"  {rec['error']}"
    tag = " (from jsonl)" if resumed else ""
    over = rec.get("overrun_s")
    if over is not None and over > allowance(rec["timeout_s"]):
        extra += f"  OVERRUN {over:.2f} s past its {rec['timeout_s']:g} s timeout"
    print(f"{rec['key']:60s} {rec['status']:8s} {t:>10s} / {rec['timeout_s']:<6g} truth "
          f"{rec['truth']:7s} {rec['outcome']}{tag}{extra}", flush=True)
    if rec["outcome"] == "wrong":
        print(f"!!!!! WRONG ANSWER on {rec['key']}: we said {rec['status']}, ground truth "
              f"{rec['truth']}{extra} !!!!!", file=sys.stderr, flush=True)


def summary(records: list[dict]) -> list[dict]:
    """One row per benchmark (in first-seen order) and a total row."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["benchmark"], []).append(r)
    if len(groups) > 1:
        groups["total"] = records
    rows = []
    for name, rs in groups.items():
        times = [r["time_s"] for r in rs if r["time_s"] is not None]
        overruns = [r for r in rs if r.get("overrun_s") is not None]
        worst = max(overruns, key=lambda r: r["overrun_s"], default=None)
        ab = [r for r in rs if r["abcrown2021_time_s"] is not None]
        ab_times = [r["abcrown2021_time_s"] for r in ab]
        rows.append({
            "benchmark": name, "instances": len(rs),
            **{k: sum(r["outcome"] == k for r in rs) for k in ("correct", "wrong", "unsolved", "unchecked")},
            "errors": sum(r["status"] == "error" for r in rs),
            "total_s": sum(times), "mean_s": sum(times) / len(times) if times else float("nan"),
            "abcrown_correct": sum(r["abcrown2021_verdict"] in DECIDED
                                   and r["abcrown2021_verdict"] == r["truth"] for r in rs),
            "abcrown_total_s": sum(ab_times),
            "abcrown_mean_s": sum(ab_times) / len(ab_times) if ab_times else float("nan"),
            "max_overrun_s": worst["overrun_s"] if worst else float("nan"),
            "max_overrun_key": worst["key"] if worst else "",
            "over_allowance": sum(r["overrun_s"] > allowance(r["timeout_s"]) for r in overruns),
        })
    return rows


def print_summary(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="verifriend vs alpha-beta-CROWN (VNN-COMP 2021 figures, GPU, incl. ~5 s start-up)")
    cols = [("benchmark", "benchmark"), ("instances", "inst"), ("correct", "correct"),
            ("wrong", "wrong"), ("unsolved", "unsolved"), ("errors", "errors"),
            ("unchecked", "unchecked"), ("total_s", "total s"), ("mean_s", "mean s"),
            ("abcrown_correct", "abcrown21 correct"), ("abcrown_total_s", "abcrown21 total s"),
            ("abcrown_mean_s", "abcrown21 mean s"), ("max_overrun_s", "max overrun s"),
            ("over_allowance", "over allowance")]
    for _, label in cols:
        table.add_column(label, justify="left" if label == "benchmark" else "right")
    for r in rows:
        table.add_row(*(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k, _ in cols))
    Console(width=max(Console().width, 190)).print(table)
    for r in rows:
        if r["max_overrun_key"]:
            print(f"{r['benchmark']}: largest overrun {r['max_overrun_s']:+.2f} s "
                  f"({r['max_overrun_key']}); {r['over_allowance']} of {r['instances']} beyond "
                  "max(1 s, 5 % of the timeout)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="folder holding the benchmark folders")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), help="benchmark folder names")
    ap.add_argument("--limit", type=int, default=None, help="first N instances of each benchmark")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply each instance's timeout")
    ap.add_argument("--jsonl", type=Path, default=None,
                    help="append one JSON line per finished instance; skip instances already in it")
    ap.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="a verifier option for every instance, as `verifriend vnncomp --set` "
                         "takes it (e.g. --set bab.mnc=true); repeatable")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where each instance's bounds and attacks run (`verifriend vnncomp "
                         "--device`)")
    ap.add_argument("--in-process", action="store_true",
                    help="verify in this process (no start-up counted) instead of one "
                         "`verifriend vnncomp` process per instance")
    ap.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                    help="run the instances on Ray workers: alone, a local Ray instance with "
                         "one worker per core; else the cluster at ADDRESS (host:port, auto)")
    ap.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                    help="only the instances at positions p %% N == I (each shard its own --jsonl)")
    args = ap.parse_args(argv)
    if not args.timeout_scale > 0:
        ap.error("--timeout-scale must be positive")

    try:
        from verifriend.verify.verifier import verify_spec  # noqa: F401 - fail before the loop
    except ImportError as e:
        print(f"error: the complete verifier cannot be imported ({e}).", file=sys.stderr)
        return 2
    try:
        verifier_config(None, args.options or None)  # a bad option fails before any run
        instances = []
        for name in args.benchmarks:
            insts = read_instances(args.root / name)
            instances += insts[: args.limit] if args.limit is not None else insts
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.shard is not None:
        instances = instances[args.shard[0]::args.shard[1]]
    records = _run_all(instances, args)
    if records is None:
        return 2
    rows = summary(records)
    print_summary(rows)
    wrong = sum(r["outcome"] == "wrong" for r in records)
    if wrong:
        print(f"!!!!! {wrong} WRONG ANSWER(S) !!!!!", file=sys.stderr)
        return 1
    if any(r.get("overrun_s") is not None and r["overrun_s"] > allowance(r["timeout_s"])
           for r in records):
        return 3
    return 0


def _run_all(instances: list[Instance], args) -> list[dict] | None:
    """Every instance's record, in the order of ``instances``: those in --jsonl read back,
    the others run (here, or on Ray with --ray) and appended to it as each finishes. None
    (after one line on stderr) when --ray cannot run."""
    done = _load_jsonl(args.jsonl) if args.jsonl else {}
    if args.jsonl:
        args.jsonl.parent.mkdir(parents=True, exist_ok=True)
        with args.jsonl.open("ab+") as f:  # a line cut short by a kill: end it, not extend it
            if f.tell() and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                f.write(b"\n")
    by_key = {}
    for inst in instances:
        if _key(inst) in done:
            by_key[_key(inst)] = done[_key(inst)]
            _print_row(done[_key(inst)], resumed=True)

    def finish(rec: dict) -> None:
        _print_row(rec)
        if args.jsonl:
            with args.jsonl.open("a") as f:
                f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
        by_key[rec["key"]] = rec

    todo = [inst for inst in instances if _key(inst) not in by_key]
    if args.ray is None:
        for inst in todo:
            finish(run_one(inst, args.timeout_scale, args.in_process, args.options, args.device))
    else:
        try:
            run_on_ray(args.ray, todo, args, finish)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return None
    return [by_key[_key(inst)] for inst in instances]


if __name__ == "__main__":
    sys.exit(main())
