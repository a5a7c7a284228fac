"""Run verifriend's complete verifier on the VNN-COMP 2021 benchmarks with known answers.

For every instance of the chosen benchmark folders (../shared/vnncomp/<name>/instances.csv):
our verdict and time against the ground truth, and a per-benchmark table beside
alpha-beta-CROWN's 2021 figures from the same csv. A sat verdict's counterexample is
re-checked independently with onnxruntime. Exit code 1 if any answer is wrong.

    python benchmarks/vnncomp_check.py --benchmarks mnistfc --limit 5 --jsonl runs/mnistfc.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import numpy as np

from verifriend.errors import UserError
from verifriend.verify.vnncomp import Instance, read_instances, run_instance

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


def run_one(inst: Instance, timeout_scale: float) -> dict:
    """Verify one instance in-process and classify the answer against the ground truth."""
    rec = {"key": _key(inst), "benchmark": inst.benchmark, "onnx": inst.onnx.name,
           "vnnlib": inst.vnnlib.name, "timeout_s": inst.timeout_s * timeout_scale,
           "truth": inst.verdict or "unknown",
           "abcrown2021_verdict": inst.extra.get("abcrown2021_verdict", ""),
           "abcrown2021_time_s": _float(inst.extra.get("abcrown2021_time_s"))}
    try:
        v = run_instance(inst.onnx, inst.vnnlib, inst.timeout_s * timeout_scale)
        rec.update(status=v.status, time_s=v.time_s, stage=v.stage, domains=v.domains)
    except Exception as e:  # noqa: BLE001 - one broken instance must not stop the run
        rec.update(status="error", time_s=None, error=f"{type(e).__name__}: {e}")
        if not isinstance(e, UserError):
            rec["traceback"] = traceback.format_exc()
        v = None
    truth = rec["truth"]
    if v is not None and v.status == "sat":
        if v.counterexample is None:
            rec["cex"] = {"ok": False, "why": "sat without a counterexample"}
        else:
            x, y = (np.asarray(t.detach().cpu().double()).reshape(-1) for t in v.counterexample)
            rec["cex"] = check_counterexample(inst, x)
            y_ort = np.asarray(rec["cex"].pop("y_onnxruntime"))
            if y_ort.shape == y.shape:
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
    print(f"{rec['key']:60s} {rec['status']:8s} {t:>10s}  truth {rec['truth']:7s} "
          f"{rec['outcome']}{tag}{extra}", flush=True)
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
            ("abcrown_mean_s", "abcrown21 mean s")]
    for _, label in cols:
        table.add_column(label, justify="left" if label == "benchmark" else "right")
    for r in rows:
        table.add_row(*(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k, _ in cols))
    Console(width=max(Console().width, 160)).print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="folder holding the benchmark folders")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), help="benchmark folder names")
    ap.add_argument("--limit", type=int, default=None, help="first N instances of each benchmark")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply each instance's timeout")
    ap.add_argument("--jsonl", type=Path, default=None,
                    help="append one JSON line per finished instance; skip instances already in it")
    args = ap.parse_args(argv)
    if not args.timeout_scale > 0:
        ap.error("--timeout-scale must be positive")

    try:
        from verifriend.verify.verifier import verify_spec  # noqa: F401 - fail before the loop
    except ImportError as e:
        print(f"error: the complete verifier cannot be imported ({e}).", file=sys.stderr)
        return 2
    try:
        instances = []
        for name in args.benchmarks:
            insts = read_instances(args.root / name)
            instances += insts[: args.limit] if args.limit is not None else insts
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = _load_jsonl(args.jsonl) if args.jsonl else {}
    if args.jsonl:
        args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for inst in instances:
        rec = done.get(_key(inst))
        if rec is not None:
            _print_row(rec, resumed=True)
        else:
            rec = run_one(inst, args.timeout_scale)
            _print_row(rec)
            if args.jsonl:
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
        records.append(rec)
    rows = summary(records)
    print_summary(rows)
    wrong = sum(r["outcome"] == "wrong" for r in records)
    if wrong:
        print(f"!!!!! {wrong} WRONG ANSWER(S) !!!!!", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
