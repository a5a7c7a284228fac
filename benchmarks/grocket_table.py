"""GROCKET's Table I with verifriend's `global` job: per network and output, PGD's lower
bound, the input-free (the paper's) and input-aware certified bounds, the branch-and-bound
bound, time and domains, printed beside the paper's figures for outputs 1 and 2, with the
ratio certified / PGD. Each finished output is appended to OUT/global.jsonl (one JSON object
per line, with its anytime trace), so a killed run resumes where it stopped; --report prints
what is there without computing anything, and --plot writes the anytime curves
(certified / PGD against seconds, one line per output) to OUT/anytime_<net>.png.

The networks are the paper's DNN-1..3 trained here (see benchmarks/README.md for the
commands); delta is 2/255.

    python benchmarks/grocket_table.py --models dnn1=runs/global/dnn1/model.pt --timeout 120 --out runs/global
    python benchmarks/grocket_table.py --models dnn1=... dnn2=... dnn3=... --out runs/global --report --plot
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from verifriend.app.globalrob import run_global
from verifriend.app.settings import GlobalSettings

DELTA = 2 / 255
# Table I (MNIST, delta 2/255), outputs 1 and 2: PGD lower bound, MILP-ITNE bound and hours,
# GROCKET bound and hours (on a Titan RTX)
PAPER = {
    "dnn1": ((0.347, 0.300), (0.578, 0.572), 4.8, (0.446, 0.398), 0.3),
    "dnn2": ((0.453, 0.420), (0.874, 0.723), 3.3, (0.718, 0.666), 1.3),
    "dnn3": ((0.519, 0.407), (1.521, 1.175), 3.5, (1.412, 1.106), 2.8),
}


def _done(log: Path) -> dict[tuple[str, int, float], dict]:
    rows = {}
    if log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[(r["net"], r["output"], r["timeout"])] = r
    return rows


def run(models: dict[str, str], outputs: list[int], timeout: float, log: Path,
        batch: int) -> None:
    done = _done(log)
    for net, path in models.items():
        for j in outputs:
            if (net, j, timeout) in done:
                continue
            t0 = time.monotonic()
            res = run_global(GlobalSettings(Path(path), DELTA, (j,), timeout, batch=batch))
            row = {"net": net, "timeout": timeout, "wall_s": time.monotonic() - t0,
                   **res["outputs"][0]}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{net} output {j}: PGD {row['attack_lower']:.4f}  input-free "
                  f"{row['input_free']:.4f}  input-aware {row['input_aware']:.4f}  BaB "
                  f"{row['bab']:.4f}  certified/PGD {row['ratio']:.2f}  {row['time_s']:.0f} s  "
                  f"{row['domains']} domains", flush=True)


def _accuracy(path: str) -> float:
    """Clean accuracy (%) on the MNIST test set."""
    import torch

    from verifriend.app.loaded import load_model_file
    from verifriend.data.datasets import load_dataset

    m = load_model_file(path, "mnist")
    ds = load_dataset("mnist")
    with torch.no_grad():
        pred = m.module(m.inputs(ds.x_test)).argmax(1)
    return 100 * float((pred == ds.y_test).float().mean())


def summary(log: Path, timeout: float, models: dict[str, str]) -> None:
    """Per net: test accuracy and the mean bounds over its outputs (the regularizer's
    comparison reads this)."""
    rows = [r for r in _done(log).values() if r["timeout"] == timeout]
    print("\n| net | test acc % | mean PGD lower | mean input-free | mean input-aware | "
          "mean certified | max certified |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for net in sorted({r["net"] for r in rows}):
        mine = [r for r in rows if r["net"] == net]
        acc = f"{_accuracy(models[net]):.2f}" if net in models else "-"
        mean = {k: sum(r[k] for r in mine) / len(mine)
                for k in ("attack_lower", "input_free", "input_aware", "certified")}
        print(f"| {net} | {acc} | {mean['attack_lower']:.3f} | {mean['input_free']:.3f} | "
              f"{mean['input_aware']:.3f} | {mean['certified']:.3f} | "
              f"{max(r['certified'] for r in mine):.3f} |")


def report(log: Path, timeout: float) -> None:
    rows = [r for r in _done(log).values() if r["timeout"] == timeout]
    print(f"delta 2/255, {timeout:g} s per output (attack, bounds and BaB), 2 CPU cores\n")
    print("| net | output | PGD lower | input-free | input-aware | BaB | certified / PGD | "
          "time (s) | domains |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["net"], r["output"])):
        print(f"| {r['net']} | {r['output']} | {r['attack_lower']:.3f} | {r['input_free']:.3f} | "
              f"{r['input_aware']:.3f} | {r['bab']:.3f} | {r['ratio']:.2f} | "
              f"{r['time_s']:.0f} | {r['domains']} |")
    print("\nper net: mean certified / PGD over its outputs (paper: GROCKET after its hours)\n")
    for net in sorted({r["net"] for r in rows}):
        mine = [r for r in rows if r["net"] == net]
        ratio = sum(r["ratio"] for r in mine) / len(mine)
        line = f"{net}: {ratio:.2f} over {len(mine)} outputs"
        if net in PAPER:
            pgd, _, _, gro, hours = PAPER[net]
            paper = ", ".join(f"{g / p:.2f}" for g, p in zip(gro, pgd))
            ours = ", ".join(f"{r['ratio']:.2f}" for r in mine if r["output"] in (1, 2))
            line += f"; outputs 1, 2: ours {ours or '-'}, paper {paper} ({hours} h on a GPU)"
        print(line)


def _at(r: dict, t: float) -> float | None:
    """The certified bound / PGD reached by ``t`` seconds (None: no bound yet)."""
    seen = [b for s, b, _ in r["trace"] if s <= t]
    return min(seen) / r["attack_lower"] if seen else None


def anytime(log: Path, timeout: float) -> None:
    """How the bound improves: certified / PGD after given seconds, per output."""
    rows = [r for r in _done(log).values() if r["timeout"] == timeout]
    marks = [t for t in (5, 10, 20, 30, 60, 120, 300, 600) if t <= timeout]
    print("\nanytime: certified bound / PGD lower bound after ... seconds\n")
    print("| net | output | " + " | ".join(f"{t} s" for t in marks) + " |")
    print("|---|---:|" + "---:|" * len(marks))
    for r in sorted(rows, key=lambda r: (r["net"], r["output"])):
        cells = [_at(r, t) for t in marks]
        print(f"| {r['net']} | {r['output']} | "
              + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")


def plot(log: Path, timeout: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _done(log).values() if r["timeout"] == timeout]
    for net in sorted({r["net"] for r in rows}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in sorted((r for r in rows if r["net"] == net), key=lambda r: r["output"]):
            t = [p[0] for p in r["trace"]] + [r["time_s"]]
            b = [p[1] / r["attack_lower"] for p in r["trace"]] + [r["ratio"]]
            ax.step(t, b, where="post", label=f"output {r['output']}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xlabel("seconds")
        ax.set_ylabel("certified bound / PGD lower bound")
        ax.set_title(f"{net}: anytime certified bound (delta 2/255)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / f"anytime_{net}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, metavar="NAME=PATH")
    ap.add_argument("--outputs", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per output")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report", action="store_true", help="print the table, compute nothing")
    ap.add_argument("--plot", action="store_true", help="write the anytime curves")
    a = ap.parse_args()
    models = dict(m.split("=", 1) for m in a.models)
    a.out.mkdir(parents=True, exist_ok=True)
    log = a.out / "global.jsonl"
    if not a.report:
        run(models, [int(j) for j in a.outputs.split(",")], a.timeout, log, a.batch)
    report(log, a.timeout)
    anytime(log, a.timeout)
    summary(log, a.timeout, models)
    if a.plot:
        plot(log, a.timeout, a.out)


if __name__ == "__main__":
    main()
