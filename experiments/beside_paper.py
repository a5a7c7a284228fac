"""Print an experiment's results beside the NBC paper's numbers, in the paper's layout.

    python experiments/beside_paper.py RUN_DIR --paper mnist-M1
    python experiments/beside_paper.py RUN_DIR --paper mnist-M1-delta \\
        --deltas trades+nbc=trades madry+nbc-then-madry=madry rs-then-rs+nbc=rs

RUN_DIR holds the results.json of `verifriend experiment`. Each cell is "ours / paper"
(the paper's tables are in nbc_paper_numbers.json next to this script). Methods are matched
by position: the recipe's methods named with --methods (default: trades madry rs nbc, the
paper's T M R O) against the paper table's columns. With --deltas each column is a
combination minus its baseline (the paper's Table 2). Below the table: the order of the
methods by UNSAT % and by Stable % at every radius, ours and the paper's.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

PAPER = Path(__file__).with_name("nbc_paper_numbers.json")
METRICS = {"UNSAT %": "unsat_pct", "Stable %": "stable_pct", "Time s": "verify_time_s",
           "Time U+T s": "verify_time_unsat_timeout_s", "PGD-100 acc %": "pgd_acc"}


def _radius(text: str) -> float:
    return float(Fraction(text))


def _ours(res: dict, eps: float, key: str) -> float | None:
    for r in res["results"]:
        if abs(r["eps"] - eps) < 1e-6:
            return r.get(key)
    return None


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.1f}" if signed else f"{v:.1f}"


def _columns(results: dict, methods: list[str], deltas: list[tuple[str, str]] | None):
    """Per column a function (eps or None for clean accuracy, metric key) -> value."""
    def value(name, eps, key):
        res = results.get(name)
        if res is None:
            return None
        return res["results"][0]["clean_acc"] if eps is None else _ours(res, eps, key)

    if deltas:
        def delta(combo, base):
            def f(eps, key):
                a, b = value(combo, eps, key), value(base, eps, key)
                return None if a is None or b is None else a - b
            return f
        return [f"{c} - {b}" for c, b in deltas], [delta(c, b) for c, b in deltas]
    return methods, [lambda eps, key, n=n: value(n, eps, key) for n in methods]


def _order(names: list[str], values: list) -> str:
    """"a 60.1 > b 35.5 = c 35.5" (ties at the printed precision joined by "=")."""
    pairs = sorted(((round(v, 1), n) for n, v in zip(names, values) if v is not None),
                   key=lambda p: -p[0])
    text = ""
    for i, (v, n) in enumerate(pairs):
        if i:
            text += " = " if v == pairs[i - 1][0] else " > "
        text += f"{n} {v:.1f}"
    return text


def beside(run: Path, paper_key: str, methods: list[str],
           deltas: list[tuple[str, str]] | None = None) -> str:
    """The markdown table (ours / paper) and the orderings."""
    results = json.loads((run / "results.json").read_text())["methods"]
    paper = json.loads(PAPER.read_text())[paper_key]
    names, cols = _columns(results, methods, deltas)
    if len(cols) != len(paper["methods"]):
        raise SystemExit(f"{len(cols)} columns of ours against the paper's "
                         f"{len(paper['methods'])} ({', '.join(paper['methods'])}).")
    signed = bool(deltas)
    lines = [f"| metric | {' | '.join(names)} |", "|---|" + "---:|" * len(names),
             "| Test acc % | " + " | ".join(f"{_fmt(c(None, None), signed)} / "
                                           f"{_fmt(p, signed)}" for c, p in
                                           zip(cols, paper["Test acc %"])) + " |"]
    radii = [k for k in paper if k not in ("methods", "Test acc %")]
    orders = []
    for r in radii:
        eps = _radius(r)
        for label, key in METRICS.items():
            cells = [f"{_fmt(c(eps, key), signed)} / {_fmt(p, signed)}"
                     for c, p in zip(cols, paper[r][label])]
            lines.append(f"| {label} (eps={r}) | " + " | ".join(cells) + " |")
        if not deltas:
            for label in ("UNSAT %", "Stable %"):
                key = METRICS[label]
                orders.append(f"- {label} at eps {r}: ours {_order(names, [c(eps, key) for c in cols])}"
                              f"; paper {_order(names, paper[r][label])}")
    return "\n".join(lines + [""] + orders) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="an experiment's --out folder (with results.json)")
    ap.add_argument("--paper", required=True, help="a key of nbc_paper_numbers.json")
    ap.add_argument("--methods", nargs="+", default=["trades", "madry", "rs", "nbc"])
    ap.add_argument("--deltas", nargs="+", metavar="COMBO=BASE")
    a = ap.parse_args(argv)
    if not (a.run / "results.json").exists():
        print(f"{a.run} has no results.json (run `verifriend experiment` into it first).",
              file=sys.stderr)
        return 2
    deltas = [tuple(d.split("=", 1)) for d in a.deltas] if a.deltas else None
    print(beside(a.run, a.paper, a.methods, deltas))
    return 0


if __name__ == "__main__":
    sys.exit(main())
