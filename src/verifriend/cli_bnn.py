"""`verifriend bnn`: the binarized-network commands (train, verify exactly with SAT, benchmark
the solver backends); each builds one settings object and calls one job in :mod:`verifriend.app`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from verifriend.cli_common import DataDir, console, err_console, user_errors

bnn_app = typer.Typer(help="Binarized networks: train, verify exactly with SAT, benchmark solvers.",
                      no_args_is_help=True, rich_markup_mode="markdown")


@bnn_app.command("train", epilog="Example: verifriend bnn train --arch conv-small --dataset mnist "
                 "--epochs 5 --eps 0.1 --cbd 1e-4 --out runs/bnn/conv-small.pt")
@user_errors
def bnn_train(
    out: Annotated[Path, typer.Option(help="Model file (.pt); a .json with the summary goes beside it.")],
    arch: Annotated[str, typer.Option(help="mlp | conv-small | conv-large | digits, or hidden widths like 100,50.")] = "conv-small",
    dataset: Annotated[str, typer.Option(help="digits (scikit-learn 8x8), mnist-embedded, mnist, fashion-mnist, cifar10.")] = "mnist",
    data_dir: DataDir = None,
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    eps: Annotated[float, typer.Option(min=0, help="PGD training radius, ramped over the first half.")] = 0.1,
    cbd: Annotated[float, typer.Option(min=0, help="Cardinality-bound decay weight eta (0: off).")] = 1e-4,
    mask_decay: Annotated[float, typer.Option(min=0, help="BinMask weight decay on positive masks.")] = 1e-5,
    sparsity: Annotated[str, typer.Option(help="binmask | ternary | none.")] = "binmask",
    step: Annotated[float | None, typer.Option(help="Input quantization step (default per data set).")] = None,
    lr: float = 1e-3,
    batch_size: int = 128,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training examples.")] = None,
    test_limit: Annotated[int | None, typer.Option(help="Accuracy on the first N test images.")] = None,
    adaptive_alpha: Annotated[bool, typer.Option(help="Adaptive gradient cancelling (alpha per epoch).")] = True,
    seed: int = 0,
    verifier_epochs: Annotated[int, typer.Option(min=0, help="In the last N epochs, also train on counterexamples of the exact verifier for images PGD does not break.")] = 0,
    verifier_images: Annotated[int, typer.Option(min=0, help="Training images handed to the verifier each such epoch.")] = 500,
    verifier_time: Annotated[float, typer.Option(min=0.001, help="Seconds per verifier query.")] = 0.05,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (on a busy 2-core machine 1 trained conv-small ~5x faster than 2).")] = None,
) -> None:
    """Train a BNN (BinMask, cardinality-bound decay, adaptive gradient cancelling, PGD)."""
    from verifriend.app.bnn_train import run_bnn_train
    from verifriend.app.display import bnn_train_text
    from verifriend.app.settings import BnnTrainSettings
    from verifriend.bnn.train import BNNTrainConfig

    cfg = BNNTrainConfig(epochs=epochs, eps=eps, cbd=cbd, mask_decay=mask_decay, lr=lr,
                         batch_size=batch_size, limit=limit, adaptive_alpha=adaptive_alpha,
                         seed=seed, verifier_epochs=verifier_epochs,
                         verifier_images=verifier_images, verifier_time=verifier_time)
    summary = run_bnn_train(BnnTrainSettings(out, arch, dataset, data_dir, cfg, step, sparsity,
                                             test_limit, threads=threads))
    console.print(bnn_train_text(out, summary), highlight=False, soft_wrap=True)


@bnn_app.command("verify", epilog="Example: verifriend bnn verify runs/bnn/conv-small.pt --eps 0.1 --limit 1000")
@user_errors
def bnn_verify(
    model: Annotated[Path, typer.Argument(help="A .pt written by `verifriend bnn train`.")],
    eps: Annotated[float, typer.Option(help="Linf radius in [0, 1] pixel units.")] = 0.1,
    solver: Annotated[str, typer.Option(help="native, pysat-gluecard4, pysat-totalizer-cadical153, cpsat, z3, ...")] = "native",
    timeout: Annotated[float | None, typer.Option(help="Seconds per image (none: no limit).")] = None,
    limit: Annotated[int | None, typer.Option(help="Verify the first N test images.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set (default: the one the model was trained on).")] = None,
    data_dir: DataDir = None,
    pgd_steps: Annotated[int, typer.Option(help="PGD steps of the attack accuracy.")] = 20,
    log: Annotated[Path | None, typer.Option(help="Write one JSON line per image here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Exact robustness verification of a BNN: one SAT encoding, one query per image."""
    from verifriend.app.bnn_verify import run_bnn_verify
    from verifriend.app.display import bnn_verify_text
    from verifriend.app.settings import BnnVerifySettings

    r = run_bnn_verify(BnnVerifySettings(model, eps, solver, timeout, limit, dataset, data_dir,
                                         pgd_steps, log), progress=not json_out)
    if json_out:
        print(json.dumps(r, indent=2, default=float))
        return
    console.print(bnn_verify_text(r, eps), highlight=False, soft_wrap=True)


@bnn_app.command("bench", epilog="Examples: verifriend bnn bench --quick | verifriend bnn bench "
                 "--nets digits,conv-small --timeout 2 --json | verifriend bnn bench m.pt --eps 0.1")
@user_errors
def bnn_bench(
    models: Annotated[list[Path] | None, typer.Argument(help="Saved BNNs (default: the benchmark's own networks, trained into --models-dir or loaded from it).")] = None,
    quick: Annotated[bool, typer.Option(help="A few minutes: the digits net and a small MNIST net, fewer backends, 1 s a query.")] = False,
    nets: Annotated[str | None, typer.Option(help="Comma-separated bench networks: digits, mnist-quick, mnist-mlp, conv-small, conv-small-0.3, conv-large, cifar-conv-small-2, cifar-conv-small-8.")] = None,
    models_dir: Annotated[Path, typer.Option(help="Where the bench networks are trained once and then loaded from.")] = Path("runs/bnn-bench"),
    backends: Annotated[str | None, typer.Option(help="Comma-separated backends (default: native, exact if installed, cpsat, PySAT Gluecard4/Minicard and CNF encodings, z3).")] = None,
    eps: Annotated[list[float] | None, typer.Option(help="Radii (repeatable; default: each network's own).")] = None,
    images: Annotated[int | None, typer.Option(min=1, help="Test images per suite (default 100; 50 for mnist-quick and with --quick).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per query (default 2; 1 with --quick).")] = None,
    max_clauses: Annotated[int | None, typer.Option(help="Skip a CNF backend whose encoding passes this many clauses (default: none; 5M with --quick).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set of the given models (default: the one each was trained on).")] = None,
    data_dir: DataDir = None,
    workers: Annotated[int, typer.Option(min=1, help="Bench networks trained at once (separate processes, one thread each).")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print agreement and per-backend figures as JSON.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write everything, per-query verdicts and times included, as JSON here.")] = None,
) -> None:
    """The same BNN queries on every solver backend: solve times side by side, ratios to native.

    One encoding per network, loaded once per backend, one query per correctly classified test
    image (assumptions). native-fresh answers each query on a newly loaded solver: the gain of
    reusing one encoding. Unknown queries count at the time limit (ratios are lower bounds).
    """
    from verifriend.app.bnn_bench import format_summary, run_bnn_bench, slim
    from verifriend.app.settings import BnnBenchSettings

    def split(text: str | None) -> tuple[str, ...] | None:
        return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None

    def log(line: str) -> None:
        err_console.print(line, highlight=False)

    r = run_bnn_bench(BnnBenchSettings(tuple(models or ()), quick, split(nets), models_dir,
                                       split(backends), tuple(eps) if eps else None, images,
                                       timeout, max_clauses, dataset, data_dir, workers, out),
                      log=log)
    if json_out:
        print(json.dumps(slim(r), indent=1, default=float))
    else:
        console.print(format_summary(r), highlight=False, soft_wrap=True)  # a fixed-width table
