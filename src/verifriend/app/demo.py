"""The main job (`verifriend demo`): natural vs NBC training on real MNIST, compared on
friendliness metrics."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from verifriend.app.artifacts import write_figure
from verifriend.app.display import comparison_table
from verifriend.app.evaluate import complete_verification
from verifriend.app.outputs import output_dir, write_json_atomic, write_text_atomic
from verifriend.app.report import write_report
from verifriend.app.settings import DemoConfig
from verifriend.app.train import train_and_save, train_files
from verifriend.data import load_dataset, select_per_class
from verifriend.metrics import evaluate_friendliness
from verifriend.metrics.report import bar_chart, markdown_table
from verifriend.train import TrainConfig

METHODS = ("natural", "nbc")


def run_demo(cfg: DemoConfig, console: Console | None = None) -> dict:
    """Train a natural and an NBC network, evaluate both, write results.json and report.md."""
    console = console or Console()
    files = ["results.json", "report.md", "friendliness.png", "report.html",
             *(f for m in METHODS for f in (*train_files(m), f"{m}.verify.jsonl"))]
    with output_dir(cfg.out, "--out", files=files) as out:  # checked before any work
        return _run(cfg, out, console)


def _run(cfg: DemoConfig, out: Path, console: Console) -> dict:
    data = load_dataset(cfg.dataset, cfg.data_dir)
    console.print(f"[bold]verifriend demo[/] on {data.display_name}: {len(data.x_train)} train / "
                  f"{len(data.x_test)} test images, arch {cfg.arch}")
    idx = select_per_class(data.y_test, cfg.per_class, seed=cfg.seed)
    models: dict[str, dict] = {}
    for method in METHODS:
        console.print(f"\n[bold]{method}[/] training, {cfg.epochs} epochs, train eps {cfg.train_eps}")
        tcfg = TrainConfig(method=method, epochs=cfg.epochs, lr=cfg.lr, eps=cfg.train_eps,
                           seed=cfg.seed)
        model, ckpt, history = train_and_save(cfg.arch, data, tcfg, out, name=method,
                                              restart=True)
        console.print(f"evaluating {len(idx)} properties at eps {cfg.eval_eps} ...")
        metrics = evaluate_friendliness(model, data.x_test, data.y_test, idx, cfg.eval_eps)
        models[method] = {**metrics.to_dict(), "train_time_s": history[-1]["total_time_s"],
                          "checkpoint": str(ckpt)}
        if cfg.verify_timeout > 0:
            console.print(f"complete verification, {cfg.verify_timeout:g} s per property ...")
            models[method].update(_complete_verification(cfg, ckpt, out / f"{method}.verify.jsonl"))
    title = (f"{cfg.arch} on {data.display_name}, train eps {cfg.train_eps}, "
             f"eval eps {cfg.eval_eps}, {len(idx)} properties")
    console.print(comparison_table(models, title))
    results = {"demo": {**cfg.__dict__, "dataset": data.display_name, "n_properties": len(idx)},
               "models": models}
    write_json_atomic(out / "results.json", results)
    write_figure(out / "friendliness.png", bar_chart(models, title))
    write_text_atomic(
        out / "report.md", f"# verifriend demo\n\n{title}.\n\n{markdown_table(models)}\n\n"
        "Stable % = share of hidden ReLUs whose CROWN pre-activation bounds do not straddle 0, "
        "averaged over properties; Proved % = properties whose robustness margins IBP or CROWN "
        "bound above 0. UNSAT % / SAT % / Timeout % = verdicts of the complete verifier "
        f"(attack, alpha-CROWN, branch and bound; {cfg.verify_timeout:g} s per property) over "
        "all properties; Verify time = its mean time per correctly classified property; "
        "Time over UNSAT+timeout = the mean over those that ended UNSAT or timed out "
        "(the NBC paper's measure of proof effort).\n\n![friendliness](friendliness.png)\n")
    console.print(f"\nwrote {out / 'results.json'}, {out / 'report.md'}, {out / 'friendliness.png'}, "
                  f"{write_report(out)}")
    return results


def _complete_verification(cfg: DemoConfig, ckpt: Path, jsonl: Path) -> dict:
    """The complete verifier on the demo's properties (a resumable campaign)."""
    jsonl.unlink(missing_ok=True)  # the model was just trained: start the campaign afresh
    return complete_verification(ckpt, cfg.eval_eps, cfg.verify_timeout, cfg.per_class, jsonl,
                                 data_dir=cfg.data_dir, seed=cfg.seed)
