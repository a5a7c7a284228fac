"""The VNN paper's Table I, reproduced with verifriend's own jobs: each network is rewritten
by `verifriend sparsify` (eps, validation = MNIST test images 1..200, the magnitude baseline at
equal sparsity beside it; the rewrite's LP seconds per layer printed), evaluated by
`verifriend evaluate` on test images 201..400 (CROWN, alpha-CROWN and, with --timeout, the
complete verifier), and printed in the paper's layout beside its DeepPoly and SafeDeep figures.

Everything lands in --out and resumes: the networks in OUT/nets, CROWN and alpha-CROWN in
OUT/t0_<net>, the complete verifier's campaign logs in OUT/t<T>_<net> (one per model and radius,
as `verifriend evaluate --timeout T` or `verifriend verify --indices 201:401` write them).
--report prints what is there, complete-verifier cells from finished or partial logs, without
computing anything (a partial cell counts the UNSAT found so far over all 200 properties and
says how many are decided).

    python benchmarks/vnn_table1.py --out runs/vnn                       # four nets, CROWN
    python benchmarks/vnn_table1.py --out runs/vnn --nets 2_50 --timeout 30
    python benchmarks/vnn_table1.py --out runs/vnn --models runs/cnn/model.pt --timeout 0
    python benchmarks/vnn_table1.py --out runs/vnn --report --timeout 30
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from verifriend.app.campaign import read_results, summarize
from verifriend.app.evaluate import evaluate_models
from verifriend.app.settings import CompareSettings, EvaluateSettings, SparsifySettings
from verifriend.app.sparsify import run_sparsify

VNNLP = Path(__file__).resolve().parents[2] / "shared" / "vnnlp"
DELTAS = (0.01, 0.02, 0.03, 0.05, 0.07)
INDICES = (201, 401)
# Table I, original -> VNN at eps 0: ERAN DeepPoly, and SafeDeep where the paper gives it
DEEPPOLY = {
    "2_50": ((90.5, 92.5), (68.5, 85.5), (22.5, 75.5), (1, 32), (0.5, 9.5)),
    "2_100": ((85, 92.5), (33.5, 85), (3.5, 70), (0, 16.5), (0, 2)),
    "5_100": ((75.5, 92), (13.5, 74.5), (0.5, 38), (0, 2), (0, 0)),
}
SAFEDEEP = {"2_50": ((91.5, 93), (78, 87.5), (41, 79.5), (3, 45), (1, 13))}


def _short(model: str) -> str:
    """``2_50`` for the shared ``mnist_relu_2_50``; a file's folder and stem otherwise."""
    p = Path(model)
    return model if not p.suffix else f"{p.parent.name}_{p.stem}"


def _trio(model: str, out: Path, eps: float, workers: int) -> list[Path]:
    """The original, its VNN rewrite and the magnitude baseline (rewritten once, then read)."""
    short = _short(model)
    src = VNNLP / f"mnist_relu_{short}.onnx" if not Path(model).suffix else Path(model)
    suffix = src.suffix
    tag = "" if eps == 0 else f"{eps:g}"
    stem = src.stem if not Path(model).suffix else short
    new = out / "nets" / f"{stem}.vnn{tag}{suffix}"
    mag = new.with_name(f"{new.stem}.magnitude{suffix}")
    log = out / "nets" / f"sp_{short}{'_' + tag if tag else ''}.json"
    if not new.exists():
        r = run_sparsify(SparsifySettings(src, new, eps, baseline="magnitude", workers=workers))
        log.write_text(json.dumps(r))
    r = json.loads(log.read_text())
    lps = ", ".join(f"{lay['seconds']:.1f}" for lay in r["layers"])
    before = sum(lay["nonzeros_before"] for lay in r["layers"])
    after = sum(lay["nonzeros_after"] for lay in r["layers"])
    acc = r["test_accuracy"]
    print(f"\n## {short}, eps {eps:g}: rewrite {r['seconds']:.1f} s on {workers} workers (LP s "
          f"per layer: {lps}); hidden non-zeros {before} -> {after}; validation labels kept "
          f"{r['validation']['labels_kept']}/{r['validation']['of']}; test accuracy original "
          f"{acc['original']:.2f} %, VNN {acc['sparsified']:.2f} %, magnitude "
          f"{acc['magnitude']:.2f} %")
    return [src, new, mag]


def _crown(models: list[Path], folder: Path, compute: bool, pgd_steps: int) -> dict | None:
    """CROWN and alpha-CROWN figures of the three models (the evaluate job's results.json)."""
    if compute and not (folder / "results.json").exists():
        runs = tuple(EvaluateSettings(m, DELTAS, pgd_steps=pgd_steps, indices=INDICES,
                                      alpha=True, log_dir=folder) for m in models)
        evaluate_models(CompareSettings(runs, folder), progress=True)
    if not (folder / "results.json").exists():
        return None
    return json.loads((folder / "results.json").read_text())


def _complete(model: Path, folder: Path, delta: float, timeout: float) -> str:
    """The complete verifier's UNSAT % from its campaign log; '-' without one, and the count
    of decided properties when the log is partial."""
    log = folder / f"{model.stem}.eps{delta:g}.t{timeout:g}.verify.jsonl"
    _, lines, _ = read_results(log)
    if not lines:
        return "-"
    s = summarize(lines)
    n = INDICES[1] - INDICES[0]
    return f"{s['unsat_pct'] * s['n'] / n:.1f}" + ("" if s["n"] == n else f" ({s['n']}/{n})")


def _table(short: str, models: list[Path], crown: dict | None, folder: Path, timeout: float):
    print("| delta | paper DeepPoly orig -> VNN | CROWN orig / VNN / mag | alpha-CROWN orig / VNN "
          f"/ mag | complete {timeout:g} s orig / VNN / mag | paper SafeDeep orig -> VNN |")
    print("|---|---|---|---|---|---|")
    for i, d in enumerate(DELTAS):
        dp = DEEPPOLY.get(short)
        sd = SAFEDEEP.get(short)
        cells = []
        for key in ("proved_crown_pct", "proved_alpha_pct"):
            cells.append(" / ".join(f"{m['results'][i][key]:.1f}" for m in crown["models"])
                         if crown else "-")
        comp = " / ".join(_complete(m, folder, d, timeout) for m in models) if timeout else "-"
        print(f"| {d} | {f'{dp[i][0]} -> {dp[i][1]}' if dp else '-'} | {cells[0]} | {cells[1]} "
              f"| {comp} | {f'{sd[i][0]} -> {sd[i][1]}' if sd else '-'} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--nets", nargs="+", default=["2_50", "2_100", "5_100", "8_100"])
    ap.add_argument("--models", nargs="+", default=[],
                    help="verifriend .pt or ONNX files (FC or CNN) instead of --nets")
    ap.add_argument("--eps", type=float, default=0.0, help="the rewrite's relative tolerance")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="seconds per property for the complete verifier (0: CROWN only)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pgd-steps", type=int, default=100, help="of evaluate's PGD accuracy")
    ap.add_argument("--report", action="store_true", help="print what --out holds; no work")
    args = ap.parse_args()
    (args.out / "nets").mkdir(parents=True, exist_ok=True)
    for model in args.models or args.nets:
        short = _short(model) + ("" if args.eps == 0 else f"_eps{args.eps:g}")
        trio = _trio(model, args.out, args.eps, args.workers)
        crown = _crown(trio, args.out / f"t0_{short}", not args.report, args.pgd_steps)
        folder = args.out / f"t{args.timeout:g}_{short}"
        if args.timeout and not args.report:
            runs = tuple(EvaluateSettings(m, DELTAS, pgd_steps=args.pgd_steps, indices=INDICES,
                                          timeout=args.timeout, log_dir=folder) for m in trio)
            evaluate_models(CompareSettings(runs, folder), progress=True)
        _table(_short(model), trio, crown, folder, args.timeout)


if __name__ == "__main__":
    main()
