"""One row per method of an experiment: clean accuracy, and UNSAT %, Stable % and the
verifier's outcome shares at the radii asked for (the settings study of RESULTS.md).

    python experiments/settings_table.py RUN_DIR [RUN_DIR ...] --eps 0.2 0.3

Several RUN_DIRs are read in turn (a method named in two keeps the first).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _at(res: dict, eps: float) -> dict:
    for r in res["results"]:
        if abs(r["eps"] - eps) < 1e-6:
            return r
    return {}


def table(runs: list[Path], radii: list[float]) -> str:
    methods: dict[str, dict] = {}
    for run in runs:
        for name, res in json.loads((run / "results.json").read_text())["methods"].items():
            methods.setdefault(name, res)
    head = ["method", "clean %", "train s"]
    for e in radii:
        head += [f"UNSAT % @{e:g}", f"Stable % @{e:g}", f"SAT/timeout % @{e:g}",
                 f"PGD % @{e:g}"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, res in methods.items():
        cells = [name, f"{res['results'][0]['clean_acc']:.1f}",
                 f"{res.get('train_time_s', 0):.0f}"]
        for e in radii:
            r = _at(res, e)
            cells += [f"{r.get('unsat_pct', float('nan')):.0f}",
                      f"{r.get('stable_pct', float('nan')):.1f}",
                      f"{r.get('sat_pct', float('nan')):.0f} / "
                      f"{r.get('timeout_pct', float('nan')):.0f}",
                      f"{r.get('pgd_acc', float('nan')):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="experiment --out folders")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.2, 0.3])
    a = ap.parse_args(argv)
    missing = [str(r) for r in a.runs if not (r / "results.json").exists()]
    if missing:
        print(f"no results.json in {', '.join(missing)}.", file=sys.stderr)
        return 2
    print(table(a.runs, a.eps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
