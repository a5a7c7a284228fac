"""The `verifriend` command line: one typer app; each command parses its flags, builds one
settings object (:mod:`verifriend.app.settings`) and calls one job in :mod:`verifriend.app`."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from verifriend.errors import UserError

app = typer.Typer(
    help="Train, verify and measure verification-friendly neural networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def user_errors(fn):
    """Turn a UserError into one sentence on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


DataDir = Annotated[
    str | None,
    typer.Option(help="Directory with the data set files (else $VERIFRIEND_DATA, ../shared/datasets)."),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="The verifier's options as YAML (`verifriend config verifier` "
                                  "prints them all, with their defaults); --set overrides it."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Set one verifier option, over --config "
                 "(a dotted KEY for a section: --set bab.branching=fsb); repeatable."),
]


@app.command(epilog="Example: verifriend demo --out demo-out")
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output directory for models, results.json, report.md.")] = Path("demo-out"),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs per model.")] = 20,
    train_eps: Annotated[float, typer.Option(help="NBC training radius (pixel space).")] = 0.1,
    eps: Annotated[float, typer.Option(help="Evaluation radius (pixel space).")] = 0.05,
    per_class: Annotated[int, typer.Option(min=1, help="Test properties per class.")] = 10,
    verify_timeout: Annotated[float, typer.Option(
        min=0, help="Seconds per property for the complete verifier (0 skips it).")] = 5.0,
    dataset: Annotated[str, typer.Option(help="Data set name.")] = "mnist-embedded",
    data_dir: DataDir = None,
    seed: int = 0,
) -> None:
    """Train a natural and an NBC network on real MNIST and compare their verification-friendliness."""
    from verifriend.app.demo import run_demo
    from verifriend.app.settings import DemoConfig

    run_demo(DemoConfig(dataset=dataset, data_dir=data_dir, epochs=epochs, train_eps=train_eps,
                        eval_eps=eps, per_class=per_class, verify_timeout=verify_timeout,
                        seed=seed, out=str(out)), console)


@app.command(epilog="Example: verifriend train --method nbc --arch cnn_4layer --epochs 5 --eps 0.1 --out runs/nbc")
@user_errors
def train(
    out: Annotated[Path, typer.Option(help="Output directory: model.pt and model.train.json.")],
    method: Annotated[list[str], typer.Option(help="Training method: natural | madry | trades | rs | nbc | ibp | crown-ibp; repeat it to train on the sum of several losses.")] = ["natural"],  # noqa: B006
    arch: Annotated[str, typer.Option(help="Zoo architecture (see `verifriend zoo`).")] = "cnn_4layer",
    dataset: Annotated[str, typer.Option(help="Data set: mnist-embedded, mnist, fashion-mnist, cifar10.")] = "mnist-embedded",
    data_dir: DataDir = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    eps: Annotated[float, typer.Option(help="Training radius (pixel space) of the robust methods.")] = 0.1,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training examples.")] = None,
    seed: int = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    restart: Annotated[bool, typer.Option(help="Start over even if --out holds an unfinished run.")] = False,
    recipe: Annotated[Path | None, typer.Option(help="YAML recipe of phases trained one after another (e.g. RS, then RS+NBC); each phase's settings override these options.")] = None,
) -> None:
    """Train a zoo architecture with a (verification-friendly) training method.

    A run started again with the same --out and options resumes after its last finished epoch."""
    from verifriend.app.settings import TrainSettings
    from verifriend.app.train import run_train
    from verifriend.train import TrainConfig
    from verifriend.train.recipe import load_recipe

    cfg = TrainConfig.from_dict({"method": "+".join(method), "epochs": epochs, "eps": eps, "lr": lr,
                                 "batch_size": batch_size, "limit": limit, "seed": seed,
                                 "device": device})
    phases = load_recipe(recipe, cfg) if recipe is not None else [cfg]
    _, ckpt, history = run_train(TrainSettings(out=out, phases=tuple(phases), arch=arch,
                                               dataset=dataset, data_dir=data_dir,
                                               restart=restart))
    last = history[-1]
    console.print(f"wrote {ckpt} (train acc {100 * last['train_acc']:.1f}%, "
                  f"{sum(h['time_s'] for h in history):.0f} s of training)")


@app.command(epilog="Example: verifriend evaluate runs/nbc/model.pt --eps 0.02 --eps 0.05 --per-class 10 --timeout 30 --json")
@user_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="A .pt written by `verifriend train`.")],
    eps: Annotated[list[float], typer.Option(help="Verification radius; repeat for several.")] = [0.05],  # noqa: B006
    per_class: Annotated[int, typer.Option(help="Test properties per class.")] = 10,
    pgd_steps: Annotated[int, typer.Option(help="PGD steps for PGD accuracy.")] = 100,
    timeout: Annotated[float, typer.Option(help="Seconds per property for the complete verifier (UNSAT %, time); 0 skips it.")] = 0.0,
    test_limit: Annotated[int | None, typer.Option(help="Clean/PGD accuracy on the first N test images only.")] = None,
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Measure clean/PGD accuracy, stable-neuron ratios, properties proved by IBP/CROWN and,
    with --timeout, by the complete verifier (UNSAT/SAT/timeout %, time, time over UNSAT+timeout).

    The verifier's per-property log sits next to the model, so an interrupted run resumes."""
    from verifriend.app.display import comparison_table
    from verifriend.app.evaluate import evaluate
    from verifriend.app.settings import EvaluateSettings

    result = evaluate(EvaluateSettings(model, tuple(eps), per_class, pgd_steps, timeout,
                                       test_limit, data_dir), progress=not json_out)
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        cols = {f"eps={r['eps']}": r for r in result["results"]}
        console.print(comparison_table(cols, f"{result['arch']} on {result['dataset']}"))


@app.command(epilog="Example: verifriend experiment experiments/rq1_mnist_reduced.yaml --out runs/rq1")
@user_errors
def experiment(
    recipe: Annotated[Path, typer.Argument(help="Experiment recipe (YAML): data set, arch, methods, evaluation.")],
    out: Annotated[Path, typer.Option(help="Output directory: one folder per method, results.json, table.md, results.csv, plots.")],
    dataset: Annotated[str | None, typer.Option(help="Run the recipe on another data set (e.g. fashion-mnist, cifar10).")] = None,
    arch: Annotated[str | None, typer.Option(help="Run the recipe with another zoo architecture.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Train every method of a recipe and compare their verification-friendliness (the NBC
    paper's protocol: UNSAT %, Stable %, Time, Time over UNSAT+timeout, PGD and clean accuracy).

    Running the same command again resumes an interrupted experiment."""
    from verifriend.app.experiment import load_experiment, run_experiment
    from verifriend.app.settings import ExperimentSettings

    exp = load_experiment(recipe, dataset=dataset, arch=arch)
    run_experiment(ExperimentSettings(exp, out, data_dir), console=console)
    console.print(f"wrote {out / 'table.md'}, {out / 'results.csv'} and the plots")


@app.command(epilog="Example: verifriend export runs/nbc/model.pt runs/nbc/model.onnx")
@user_errors
def export(
    model: Annotated[Path, typer.Argument(help="A .pt written by `verifriend train`.")],
    onnx_path: Annotated[Path, typer.Argument(help="Where to write the ONNX file.")],
) -> None:
    """Export a verifriend model to ONNX (normalization included)."""
    from verifriend.app.artifacts import export_checkpoint
    from verifriend.app.settings import ExportSettings

    export_checkpoint(ExportSettings(model, onnx_path))
    console.print(f"wrote {onnx_path}")


@app.command(epilog="Example: verifriend sparsify ../shared/vnnlp/mnist_relu_2_50.onnx "
             "--out runs/2x50.vnn.onnx --baseline magnitude")
@user_errors
def sparsify(
    model: Annotated[Path, typer.Argument(help="An ONNX network of Gemm/MatMul + Relu layers, "
                                               "or a fully connected verifriend .pt.")],
    out: Annotated[Path, typer.Option(help="Where to write the sparsified network (the "
                                           "format of MODEL).")],
    eps: Annotated[float, typer.Option(help="Relative tolerance on the validation "
                                            "pre-activations (0: exact).")] = 0.0,
    dataset: Annotated[str, typer.Option(help="Data set of the validation images.")] = "mnist",
    data_dir: DataDir = None,
    val_indices: Annotated[str, typer.Option(help="Test images START:STOP used as the "
                                                  "validation set (the paper's 1:201).")] = "1:201",
    baseline: Annotated[str | None, typer.Option(help="magnitude: also write OUT's stem "
                                                      "+ .magnitude + its suffix, at equal "
                                                      "sparsity.")] = None,
    workers: Annotated[int, typer.Option(help="Processes solving the per-neuron LPs.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rewrite the hidden layers to the sparsest weights (L1 LP per neuron, HiGHS) that keep
    every validation image's activation pattern (the VNN paper); the output layer is kept."""
    from verifriend.app.display import sparsify_layer_line, sparsify_summary
    from verifriend.app.settings import SparsifySettings
    from verifriend.app.sparsify import parse_indices, run_sparsify

    settings = SparsifySettings(model, out, eps, dataset, data_dir, parse_indices(val_indices),
                                baseline, workers)
    show = None if json_out else (lambda r: err_console.print(sparsify_layer_line(r),
                                                              highlight=False))
    result = run_sparsify(settings, show)
    if json_out:
        print(json.dumps(result))
    else:
        console.print(sparsify_summary(result), highlight=False)


@app.command(epilog="Example: verifriend bounds net.onnx prop.vnnlib.gz --method crown --json")
@user_errors
def bounds(
    model: Annotated[Path, typer.Argument(help="An ONNX network.")],
    spec: Annotated[Path, typer.Argument(help="A VNN-LIB spec (.vnnlib or .vnnlib.gz).")],
    method: Annotated[str, typer.Option(help="ibp | crown | alpha (alpha-CROWN).")] = "crown",
    iterations: Annotated[int, typer.Option(min=0, help="alpha-CROWN iterations.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Bound a.Y - b for every output constraint a.Y >= b of the spec, in file order."""
    from verifriend.app.bounds import bound_files
    from verifriend.app.display import bounds_table
    from verifriend.app.settings import BoundsSettings

    result = bound_files(BoundsSettings(model, spec, method, iterations))
    if json_out:
        print(json.dumps(result))
        return
    console.print(bounds_table(result, method))


@app.command(epilog="Example: verifriend vnncomp net.onnx prop.vnnlib.gz --timeout 120 --out result.txt")
@user_errors
def vnncomp(
    model: Annotated[Path, typer.Argument(help="An ONNX network.")],
    spec: Annotated[Path, typer.Argument(help="A VNN-LIB spec (.vnnlib or .vnnlib.gz).")],
    out: Annotated[Path, typer.Option(help="Where to write the VNN-COMP result file.")],
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds for the whole run, loading included.")] = 300.0,
    config: ConfigFile = None,
    set_: SetOption = None,
) -> None:
    """Run one VNN-COMP instance with the complete verifier and write its result file.

    The timeout counts from the start of the process (interpreter start-up and imports
    included), as a VNN-COMP harness measures it; a verdict reached after it is written as
    `timeout`. Any earlier result file at --out is removed first, so a run that fails leaves
    none."""
    import time

    from verifriend.app.config import verifier_config
    from verifriend.app.settings import VnncompSettings
    from verifriend.app.vnncomp import clear_result_file, run_vnncomp

    clear_result_file(out)  # first: a run that fails, on a bad option too, leaves no verdict
    settings = VnncompSettings(model, spec, timeout, out, verifier_config(config, set_))
    # run as the `verifriend` executable, the process's start-up counts; called in-process
    # (e.g. by a test), the clock starts here
    elapsed = 0.0 if _process_start is None else time.monotonic() - _process_start
    verdict = run_vnncomp(settings, elapsed=elapsed)
    print(f"{verdict.status}  {verdict.time_s:.2f} s")


@app.command(epilog="Example: verifriend verify --model runs/nbc/model.pt --eps 0.05 --timeout 60 --per-class 10")
@user_errors
def verify(
    model: Annotated[Path, typer.Option(help="A .pt written by `verifriend train`.")],
    eps: Annotated[float, typer.Option(help="Linf radius (pixel space, in [0, 1]).")],
    timeout: Annotated[float, typer.Option(help="Seconds per property.")],
    per_class: Annotated[int, typer.Option(help="Test properties per class.")] = 10,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(
        help="Results file, one JSON line per property; an existing one is resumed "
             "(default: `<model stem>.verify.eps<E>.jsonl` next to the model).")] = None,
    seed: Annotated[int, typer.Option(help="Selection of the test images (0: the first of each class).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
    config: ConfigFile = None,
    set_: SetOption = None,
) -> None:
    """Verify Linf robustness of test images with the complete verifier; resumes a killed run."""
    from verifriend.app.campaign import run_verify
    from verifriend.app.config import verifier_config
    from verifriend.app.display import campaign_table
    from verifriend.app.settings import CampaignSettings

    result = run_verify(CampaignSettings(model, eps, timeout, per_class, data_dir, out, seed,
                                         verifier_config(config, set_)), progress=not json_out)
    if json_out:
        print(json.dumps(result.to_dict(), indent=2))
        return
    console.print(campaign_table(result, eps, timeout))
    console.print(f"results: {result.out_jsonl} ({result.resumed} resumed, {result.new} new)", highlight=False,
                  soft_wrap=True)


@app.command(epilog="Example: verifriend zoo")
@user_errors
def zoo() -> None:
    """List the model zoo's architectures."""
    from verifriend.models import describe_architecture, list_architectures

    for name in list_architectures():
        console.print(f"[bold]{name}[/]: {describe_architecture(name)}", highlight=False)


bnn_app = typer.Typer(help="Binarized networks: train, verify exactly with SAT, benchmark solvers.",
                      no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(bnn_app, name="bnn")


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

config_app = typer.Typer(help="Print a job's options as YAML, to edit and pass back with --config.",
                         no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(config_app, name="config")


@config_app.command("verifier", epilog="Example: verifriend config verifier > v.yaml && "
                    "verifriend vnncomp net.onnx prop.vnnlib --config v.yaml --out result.txt")
@user_errors
def config_verifier() -> None:
    """The complete verifier's options with their defaults, as YAML with a comment per option
    (the file `verifriend verify` and `verifriend vnncomp` read with --config)."""
    from verifriend.app.config import VERIFIER_HEADER, options_yaml
    from verifriend.verify.verifier import VerifierConfig

    print(options_yaml(VerifierConfig(), VERIFIER_HEADER), end="")


# commands whose process is timed from outside (a VNN-COMP harness): they skip the
# interpreter's teardown, which with torch loaded takes 0.3-1.5 s
_FAST_EXIT = ("vnncomp",)
# when the process started (time.monotonic()), set by main(): None when the app is called
# in another program's process
_process_start: float | None = None


def main() -> None:
    """The `verifriend` executable: the typer app, with a fast exit for timed commands."""
    import os
    import sys
    import time

    from verifriend.deadline import process_elapsed

    global _process_start
    _process_start = time.monotonic() - process_elapsed()
    if len(sys.argv) < 2 or sys.argv[1] not in _FAST_EXIT:
        app()
        return
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
