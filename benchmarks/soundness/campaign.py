"""The soundness campaign's driver: one network per index, worker processes, log, summary.

``run_one`` generates network ``index`` (ONNX and VNN-LIB files), runs verifriend's
``vnncomp.run_instance`` on it, checks the result file's round trip and resolves the
verdict against the oracle or by replaying the counterexample in onnxruntime, saving wrong
verdicts; ``run_campaign`` runs (or resumes) a range of indices in spawned worker processes
with a JSONL log; ``summarize`` and ``format_summary`` report it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

from .netgen import Net, OrtNet, forward, onnx_bytes
from .oracle import ROUND_TOL, Instance, make_instance, oracle_answer
from .props import Prop, vnnlib_text

LOG_NAME = "results.jsonl"
CONFIG_NAME = "config.json"


# ------------------------------------------------------------------ one network


def _net_label(inst: Instance) -> str:
    return f"{inst.net.kind}/{inst.net.family}/{inst.prop.kind}"


def _check_ort(net: Net, prop: Prop, ort_net: OrtNet, layers, acts, rng) -> float:
    """Largest |onnxruntime - float64 numpy| over a few points, relative to the outputs."""
    worst = 0.0
    for lo, hi in prop.boxes:
        for x in (lo, hi, lo + (hi - lo) * rng.random(lo.shape)):
            x32 = x.astype(np.float32).astype(np.float64)
            y64 = forward(layers, acts, x32[None])[0]
            y = ort_net(x32)
            worst = max(worst, float(np.max(np.abs(y - y64)) / (1.0 + np.max(np.abs(y64)))))
    return worst


def run_one(index: int, seed: int, timeout_scale: float, work: str, wrong_dir: str) -> dict:
    """Generate, verify and check network ``index``; returns its log record."""
    t_start = time.perf_counter()
    rec: dict = {"index": index}
    files: dict[str, Path] = {}
    try:
        inst = make_instance(index, seed, timeout_scale)
        net, prop = inst.net, inst.prop
        layers, acts = net.dense()
        rec.update(net=_net_label(inst), acts="/".join(net.activations()), n_in=net.n_in,
                   hidden=net.hidden_sizes(), n_out=layers[-1][0].shape[0],
                   boxes=len(prop.boxes), box_styles=prop.box_styles,
                   clauses=[len(b) for _, b in prop.clauses], mode=inst.mode,
                   delta=inst.delta, scale=inst.scale, timeout=round(inst.timeout, 3))
        rng = np.random.default_rng([seed, index, 1])
        model = onnx_bytes(net)
        text = vnnlib_text(prop, net.n_in, layers[-1][0].shape[0], rng)
        folder = Path(work)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"onnx": folder / f"{index}.onnx", "vnnlib": folder / f"{index}.vnnlib"}
        files["onnx"].write_bytes(model)
        files["vnnlib"].write_text(text)
        ort_net = OrtNet(model, net.onnx_shape)
        mismatch = _check_ort(net, prop, ort_net, layers, acts, rng)
        answer, info = oracle_answer(inst)
        rec["oracle"] = {"answer": answer, "method": info["method"],
                         "best": _f(info["best"]), "ub": _f(info["ub"]),
                         "time_s": round(inst.oracle_s, 4)}
        if mismatch > 1e-4:
            raise RuntimeError(f"campaign: onnxruntime differs from the numpy forward pass "
                               f"by {mismatch:.3g}")
        rec.update(_verify_and_resolve(inst, files, ort_net, layers, acts, answer, info))
    except Exception as err:  # noqa: BLE001 - a campaign bug must not stop the campaign
        rec.update(resolution="ERROR (campaign)", wrong=False, error=True,
                   detail=f"{type(err).__name__}: {err}", trace=traceback.format_exc()[-2000:])
    if rec.get("wrong") or rec.get("error"):
        dest = Path(wrong_dir) / str(index)
        dest.mkdir(parents=True, exist_ok=True)
        for name, p in files.items():
            if p.exists():
                shutil.copy(p, dest / ("net.onnx" if name == "onnx" else "spec.vnnlib"))
        (dest / "details.json").write_text(json.dumps(rec, indent=1, default=str))
        rec["saved"] = str(dest)
    for p in files.values():
        p.unlink(missing_ok=True)
    rec["total_s"] = round(time.perf_counter() - t_start, 4)
    return rec


def _f(v: float):
    return v if math.isfinite(v) else str(v)


def _verify_and_resolve(inst: Instance, files, ort_net: OrtNet, layers, acts, answer: str,
                        info: dict) -> dict:
    from verifriend.app.vnncomp import format_result, parse_result, run_instance

    prop, scale = inst.prop, inst.scale
    out: dict = {"wrong": False}
    t0 = time.perf_counter()
    try:
        verdict = run_instance(files["onnx"], files["vnnlib"], inst.timeout)
    except Exception as err:  # noqa: BLE001 - any exception is a verifier failure
        out.update(verdict="error", resolution="WRONG: verifier exception", wrong=True,
                   detail=f"{type(err).__name__}: {err}", trace=traceback.format_exc()[-3000:],
                   verify_s=round(time.perf_counter() - t0, 4))
        return out
    out.update(verdict=verdict.status, stage=verdict.stage,
               verify_s=round(time.perf_counter() - t0, 4), domains=verdict.domains)
    # the VNN-COMP result file must round-trip exactly
    try:
        text = format_result(verdict)
        status, px, py = parse_result(text)
        cex = verdict.counterexample
        ok = status == verdict.status
        if verdict.status == "sat":
            x0 = np.asarray(cex[0], dtype=np.float64).reshape(-1)
            y0 = np.asarray(cex[1], dtype=np.float64).reshape(-1)
            ok = ok and px is not None and py is not None and np.array_equal(
                px.numpy(), x0) and np.array_equal(py.numpy(), y0)
        if not ok:
            out.update(resolution="WRONG: result file round trip", wrong=True,
                       detail=text[:2000])
            return out
    except Exception as err:  # noqa: BLE001 - a result file that cannot be written or read back is wrong
        out.update(resolution="WRONG: result file round trip", wrong=True,
                   detail=f"{type(err).__name__}: {err}")
        return out
    status = verdict.status
    if status == "sat":
        x = px.numpy().astype(np.float64)
        y_ort = ort_net(x)
        y64 = forward(layers, acts, x[None])[0]
        m_ort = float(np.max(prop.margins(y_ort)))
        m64 = float(np.max(prop.margins(y64)))
        out.update(cex_ort_margin=m_ort, cex_f64_margin=m64,
                   cex_y_diff=float(np.max(np.abs(py.numpy() - y64)))
                   if py.shape == y64.shape else "size differs")
        if len(x) != inst.net.n_in or not prop.in_box(x):
            out.update(resolution="WRONG: sat counterexample outside the input box", wrong=True)
        elif m_ort >= 0:
            out["resolution"] = "sat: replayed by onnxruntime"
        elif m64 >= -ROUND_TOL * scale:
            out["resolution"] = "sat: rounding margin only (float64 yes, onnxruntime no)"
        else:
            out.update(resolution="WRONG: sat counterexample does not replay", wrong=True)
        if not out["wrong"] and answer == "unsat":
            out.update(resolution="WRONG: sat replays but the oracle proved unsat", wrong=True)
        if out["wrong"]:
            out.update(cex_x=[repr(float(v)) for v in x], cex_y_ort=y_ort.tolist())
        return out
    if status == "unsat":
        if answer == "sat":
            x = info["x"]
            out.update(resolution="WRONG: unsat but the oracle found a counterexample",
                       wrong=True, oracle_x=[repr(float(v)) for v in x],
                       oracle_y_ort=ort_net(x).tolist())
        elif answer == "unsat":
            how = "MILP" if info["method"] == "milp" else "bisection"
            out["resolution"] = f"unsat: confirmed by {how}"
        elif answer == "tie":
            out["resolution"] = "unsat: tie (oracle undecided)"
        else:
            out["resolution"] = "unsat: unchecked (oracle budget)"
        return out
    out["resolution"] = f"{status} (oracle {answer})"
    return out


# ------------------------------------------------------------------ the campaign


def _worker_init() -> None:
    import highspy
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        highspy.Highs()  # the first one prints a banner
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _task(args) -> dict:
    return run_one(*args)


def read_log(path: Path) -> dict[int, dict]:
    """Records by index; drops a truncated last line (rewriting the file without it)."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    recs: dict[int, dict] = {}
    good = 0
    for k, line in enumerate(lines):
        if not line.strip():
            if k < len(lines) - 1:
                good += len(line) + 1
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if k == len(lines) - 1 or not any(x.strip() for x in lines[k + 1:]):
                break  # a truncated last line: dropped
            raise SystemExit(f"{path}: line {k + 1} is not JSON; fix or remove the log.") from None
        recs[int(rec["index"])] = rec
        good += len(line) + 1
    if good < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return recs


def _counts_by(recs: list[dict], key: str) -> dict[str, Counter]:
    """Per value of ``key``: records, verdicts, wrong ones and campaign errors."""
    out: dict[str, Counter] = {}
    for r in recs:
        c = out.setdefault(r.get(key, "?"), Counter())
        c["n"] += 1
        c[r.get("verdict", "none")] += 1
        c["wrong"] += bool(r.get("wrong"))
        c["errors"] += bool(r.get("error"))
    return out


def summarize(recs: list[dict]) -> dict:
    by_kind = _counts_by(recs, "net")
    resolutions = Counter(r["resolution"] for r in recs)
    by_mode = _counts_by(recs, "mode")
    stages = Counter(f"{r['verdict']} by {r.get('stage') or '-'}" for r in recs
                     if r.get("verdict") in ("sat", "unsat"))
    oracle = Counter(r.get("oracle", {}).get("answer", "none") for r in recs)
    wrong = [r for r in recs if r.get("wrong")]
    errors = [r for r in recs if r.get("error")]
    return {"n": len(recs), "by_kind": by_kind, "by_mode": by_mode, "stages": stages,
            "resolutions": resolutions, "oracle": oracle,
            "wrong": wrong, "errors": errors,
            "verdicts": Counter(r.get("verdict", "error") for r in recs),
            "cpu_s": sum(r.get("total_s", 0.0) for r in recs),
            "verify_s": sum(r.get("verify_s", 0.0) for r in recs),
            "oracle_s": sum(r.get("oracle", {}).get("time_s", 0.0) for r in recs),
            "overrun": max((r.get("verify_s", 0.0) - r.get("timeout", 0.0) for r in recs),
                           default=0.0)}


def format_summary(s: dict) -> str:
    heads = ["n", "sat", "unsat", "timeout", "unknown", "raised", "wrong", "failed"]
    keys = ["n", "sat", "unsat", "timeout", "unknown", "error", "wrong", "errors"]
    lines = [f"{'network kind':<26}" + "".join(f"{h:>8}" for h in heads)]
    total = Counter()
    for kind in sorted(s["by_kind"]):
        c = s["by_kind"][kind]
        total.update(c)
        lines.append(f"{kind:<26}" + "".join(f"{c[k]:>8}" for k in keys))
    lines.append(f"{'all':<26}" + "".join(f"{total[k]:>8}" for k in keys))
    lines.append("")
    lines.append(f"{'threshold placement':<26}" + "".join(f"{h:>8}" for h in heads))
    for mode in sorted(s["by_mode"]):
        c = s["by_mode"][mode]
        lines.append(f"{mode:<26}" + "".join(f"{c[k]:>8}" for k in keys))
    lines.append("")
    lines.append("decided by stage: " + ", ".join(
        f"{k} {v}" for k, v in sorted(s["stages"].items(), key=lambda kv: -kv[1])))
    lines.append("")
    lines.append(f"{'resolution':<62}{'n':>8}")
    for res, n in sorted(s["resolutions"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{res:<62}{n:>8}")
    n = max(1, s["n"])
    o = s["oracle"]
    decided = o["sat"] + o["unsat"]
    lines.append("")
    lines.append(f"oracle: sat {o['sat']}, unsat {o['unsat']}, tie {o['tie']}, unchecked "
                 f"{o['unchecked']} (decided {100 * decided / n:.1f}%)")
    lines.append(f"time in workers: {s['cpu_s']:.0f} s ({s['cpu_s'] / n:.3f} s per network;"
                 f" verifier {s['verify_s']:.0f} s, oracle {s['oracle_s']:.0f} s); largest "
                 f"verifier overrun of its timeout {s['overrun']:.2f} s")
    lines.append("(raised: the verifier raised an exception, counted as wrong; failed: the "
                 "campaign itself failed on the index)")
    lines.append(f"WRONG: {len(s['wrong'])}   campaign errors: {len(s['errors'])}")
    return "\n".join(lines)


def run_campaign(networks: int, *, start: int = 0, workers: int | None = None,
                 out: str | Path = "soundness-out", seed: int = 0,
                 timeout_scale: float = 1.0, log=print) -> dict:
    """Run (or resume) indices ``start .. start + networks - 1``; returns the summary dict
    (``summarize`` of every logged record of the range, plus ``wall_s`` and ``new``).

    The spawned workers import this module as ``soundness.campaign``; its package's parent
    folder (``benchmarks/``) is put on ``sys.path`` for them.
    """
    import multiprocessing

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"seed": seed, "timeout_scale": timeout_scale}
    cfg_path = out / CONFIG_NAME
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != cfg:
            raise SystemExit(f"{out} holds a campaign with {old}; use another --out for {cfg}.")
    else:
        cfg_path.write_text(json.dumps(cfg))
    log_path = out / LOG_NAME
    recs = read_log(log_path)
    todo = [i for i in range(start, start + networks) if i not in recs]
    workers = max(1, workers or os.cpu_count() or 1)
    log(f"soundness campaign: indices {start}..{start + networks - 1}, {len(todo)} to run "
        f"({networks - len(todo)} already logged), {workers} workers, seed {seed}, "
        f"timeout scale {timeout_scale}, log {log_path}")
    t0 = time.perf_counter()
    work, wrong_dir = out / "tmp", out / "wrong"
    if todo:
        here = str(Path(__file__).resolve().parents[1])
        if here not in sys.path:
            sys.path.insert(0, here)  # spawned workers import soundness.campaign by name
        env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update({k: "1" for k in env})
        try:
            ctx = multiprocessing.get_context("spawn")
            args = [(i, seed, timeout_scale, str(work / str(i % 64)), str(wrong_dir))
                    for i in todo]
            with ctx.Pool(workers, initializer=_worker_init) as pool, \
                    open(log_path, "a") as fh:
                every = max(1, len(todo) // 20)
                n_wrong = 0
                for done, rec in enumerate(pool.imap_unordered(_task, args, chunksize=1), 1):
                    fh.write(json.dumps(rec, default=str) + "\n")
                    fh.flush()
                    recs[rec["index"]] = rec
                    if rec.get("wrong") or rec.get("error"):
                        n_wrong += 1
                        log(f"!! index {rec['index']}: {rec['resolution']} "
                            f"({rec.get('detail', '')[:200]}) saved in {rec.get('saved')}")
                    if done % every == 0 or done == len(todo):
                        el = time.perf_counter() - t0
                        log(f"  {done}/{len(todo)} done, {el:.0f} s, {done / el:.2f} nets/s, "
                            f"{n_wrong} wrong or failed")
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0
    chosen = [recs[i] for i in range(start, start + networks) if i in recs]
    s = summarize(chosen)
    s.update(wall_s=wall, new=len(todo), workers=workers)
    return s
