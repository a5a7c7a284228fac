"""The `verifriend` command line: one typer app; each command parses its flags, builds one
settings object (:mod:`verifriend.app.settings`) and calls one job in :mod:`verifriend.app`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from verifriend.cli_bnn import bnn_app
from verifriend.cli_common import (
    ConfigFile,
    DataDir,
    DeviceOption,
    SetOption,
    console,
    err_console,
    user_errors,
)
from verifriend.cli_report import add_report_command

app = typer.Typer(
    help="Train, verify and measure verification-friendly neural networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)

app.add_typer(bnn_app, name="bnn")
add_report_command(app)


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
    method: Annotated[list[str], typer.Option(help="Training method: natural | madry | trades | rs | nbc | ibp | crown-ibp | global; repeat it to train on the sum of several losses.")] = ["natural"],  # noqa: B006
    arch: Annotated[str, typer.Option(help="Zoo architecture (see `verifriend zoo`).")] = "cnn_4layer",
    dataset: Annotated[str, typer.Option(help="Data set: mnist-embedded, mnist, fashion-mnist, cifar10.")] = "mnist-embedded",
    data_dir: DataDir = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    eps: Annotated[float, typer.Option(help="Training radius (pixel space) of the robust methods.")] = 0.1,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    weight_decay: Annotated[float, typer.Option(help="L2 penalty: this times the sum of squared weights, added to the loss.")] = 0.0,
    global_weight: Annotated[float, typer.Option(help="lambda of --method global: CE + lambda * the global-robustness regularizer at delta = --eps.")] = 0.1,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training examples.")] = None,
    val_split: Annotated[float, typer.Option(help="Share of the training examples held out for the validation accuracy shown after every epoch (0: none).")] = 0.1,
    seed: int = 0,
    device: DeviceOption = "cpu",
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
                                 "device": device, "weight_decay": weight_decay,
                                 "global_weight": global_weight, "val_split": val_split})
    phases = load_recipe(recipe, cfg) if recipe is not None else [cfg]
    _, ckpt, history = run_train(TrainSettings(out=out, phases=tuple(phases), arch=arch,
                                               dataset=dataset, data_dir=data_dir,
                                               restart=restart))
    last = history[-1]
    val = f", validation acc {100 * last['val_acc']:.1f}%" if "val_acc" in last else ""
    console.print(f"wrote {ckpt} (train acc {100 * last['train_acc']:.1f}%{val}, "
                  f"{sum(h['time_s'] for h in history):.0f} s of training)")


@app.command(epilog="Example: verifriend evaluate runs/nbc/model.pt --eps 0.02 --eps 0.05 "
             "--per-class 10 --timeout 30 --json  |  verifriend evaluate net.onnx net.vnn.onnx "
             "--indices 201:401 --eps 0.01 --eps 0.03 --alpha --timeout 30 --out runs/table")
@user_errors
def evaluate(
    models: Annotated[list[Path], typer.Argument(help="Models: .pt written by `verifriend train`, or ONNX networks taking pixels in [0, 1].")],
    eps: Annotated[list[float], typer.Option(help="Verification radius; repeat for several.")] = [0.05],  # noqa: B006
    per_class: Annotated[int, typer.Option(help="Test properties per class.")] = 10,
    indices: Annotated[str | None, typer.Option(help="Test images START:STOP as the properties (e.g. 201:401) instead of --per-class.")] = None,
    pgd_steps: Annotated[int, typer.Option(help="PGD steps for PGD accuracy.")] = 100,
    alpha: Annotated[bool, typer.Option("--alpha", help="Also the share proved by alpha-CROWN.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per property for the complete verifier (UNSAT %, time); 0 skips it.")] = 0.0,
    test_limit: Annotated[int | None, typer.Option(help="Clean/PGD accuracy on the first N test images only.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set of ONNX models (default mnist); a checkpoint's own otherwise.")] = None,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(help="Folder for results.json, verified.md, verified.csv, verified.png and the verifier logs.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="The complete verifier's properties on Ray workers: a local Ray instance, one worker per core (needs `pip install 'verifriend[ray]'`).")] = False,
    ray_address: Annotated[str | None, typer.Option(help="A running Ray cluster to use instead (host:port, or auto: the one on this machine); implies --ray.")] = None,
    shard: Annotated[str | None, typer.Option(help="I/N: the complete verifier runs only the properties at positions p % N == I, into logs of their own (`.shardIofN` in the name).")] = None,
    device: DeviceOption = "cpu",
) -> None:
    """Measure clean/PGD accuracy, stable-neuron ratios, properties proved by IBP/CROWN
    (and alpha-CROWN) and, with --timeout, by the complete verifier (UNSAT/SAT/timeout %, time,
    time over UNSAT+timeout). Several models: a verified-% table per verifier and radius.

    The verifier's per-property log sits in --out (else next to the model), so an interrupted
    run resumes."""
    from verifriend.app.display import comparison_table
    from verifriend.app.evaluate import evaluate_models
    from verifriend.app.settings import (
        CompareSettings,
        EvaluateSettings,
        parse_indices,
        parse_shard,
    )

    rng = None if indices is None else parse_indices(indices, "--indices")
    shards = None if shard is None else parse_shard(shard)
    runs = tuple(EvaluateSettings(m, tuple(eps), per_class, pgd_steps, timeout, test_limit,
                                  data_dir, out, dataset, rng, alpha,
                                  ray=ray_address or ("local" if ray else None), shard=shards,
                                  device=device)
                 for m in models)
    result = evaluate_models(CompareSettings(runs, out), progress=not json_out)
    if json_out:
        print(json.dumps(result if len(models) > 1 else result["models"][0], indent=2))
        return
    for r in result["models"]:
        cols = {f"eps={x['eps']}": x for x in r["results"]}
        console.print(comparison_table(cols, f"{r['arch']} on {r['dataset']}"))
    if len(models) > 1:
        console.print(result["verified_md"], highlight=False, soft_wrap=True)
    if out is not None:
        console.print(f"wrote {', '.join(result['files'])}", highlight=False, soft_wrap=True)


@app.command(epilog="Example: verifriend experiment experiments/rq1_mnist_reduced.yaml --out runs/rq1 "
             "(two processes, one per core: add --only nbc --only madry to one, --only trades "
             "--only rs to the other)")
@user_errors
def experiment(
    recipe: Annotated[Path, typer.Argument(help="Experiment recipe (YAML): data set, arch, methods, evaluation.")],
    out: Annotated[Path, typer.Option(help="Output directory: one folder per method, results.json, table.md, results.csv, plots.")],
    dataset: Annotated[str | None, typer.Option(help="Run the recipe on another data set (e.g. fashion-mnist, cifar10).")] = None,
    arch: Annotated[str | None, typer.Option(help="Run the recipe with another zoo architecture.")] = None,
    data_dir: DataDir = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only this method of the recipe (repeatable); the tables cover every method evaluated in --out so far.")] = None,
) -> None:
    """Train every method of a recipe and compare their verification-friendliness (the NBC
    paper's protocol: UNSAT %, Stable %, Time, Time over UNSAT+timeout, PGD and clean accuracy).

    Running the same command again resumes an interrupted experiment."""
    from verifriend.app.experiment import load_experiment, run_experiment
    from verifriend.app.settings import ExperimentSettings

    exp = load_experiment(recipe, dataset=dataset, arch=arch)
    run_experiment(ExperimentSettings(exp, out, data_dir, tuple(only or ())), console=console)
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
    max_rows: Annotated[int, typer.Option(help="Rows a convolution channel's LP starts from (its distinct (sample, position) fields, drawn at random); violated ones are added.")] = 4000,
    output_layer: Annotated[bool, typer.Option("--output-layer", help="Also rewrite the output layer: least L1 weights keeping every validation label's margins within eps.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rewrite the hidden layers to the sparsest weights (L1 LP per neuron, HiGHS) that keep
    every validation image's activation pattern (the VNN paper); the output layer is kept."""
    from verifriend.app.display import sparsify_layer_line, sparsify_summary
    from verifriend.app.settings import SparsifySettings, parse_indices
    from verifriend.app.sparsify import run_sparsify

    settings = SparsifySettings(model, out, eps, dataset, data_dir,
                                parse_indices(val_indices, "--val-indices"), baseline, workers,
                                max_rows, output_layer)
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
    device: DeviceOption = "cpu",
) -> None:
    """Bound a.Y - b for every output constraint a.Y >= b of the spec, in file order."""
    from verifriend.app.bounds import bound_files
    from verifriend.app.display import bounds_table
    from verifriend.app.settings import BoundsSettings

    result = bound_files(BoundsSettings(model, spec, method, iterations, device))
    if json_out:
        print(json.dumps(result))
        return
    console.print(bounds_table(result, method))


@app.command(name="global", epilog="Example: verifriend global runs/dnn1/model.pt --delta 0.00784 "
             "--outputs 1,2 --timeout 600 --json")
@user_errors
def global_(
    model: Annotated[Path, typer.Argument(help="A verifriend checkpoint (.pt) or an ONNX network on pixels.")],
    delta: Annotated[float, typer.Option(help="Perturbation size (Linf, pixel space), e.g. 0.00784 = 2/255.")],
    outputs: Annotated[str | None, typer.Option(help="Outputs to bound, e.g. 0,1,5 (default: all).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per output (attack, bounds and branch and bound).")] = 60.0,
    domain: Annotated[str, typer.Option(help="Input domain LOW:HIGH of every pixel.")] = "0:1",
    dataset: Annotated[str | None, typer.Option(help="Data set whose test images start the attack (default: the checkpoint's; ONNX: mnist).")] = None,
    data_dir: DataDir = None,
    attack_starts: Annotated[int, typer.Option(help="Test images the attack starts from.")] = 1000,
    random_starts: Annotated[int, typer.Option(help="Random pairs the attack starts from.")] = 256,
    attack_steps: Annotated[int, typer.Option(help="PGD steps per start.")] = 50,
    input_free: Annotated[bool, typer.Option(help="Branch and bound on the paper's input-free relaxation instead of the input-aware one.")] = False,
    batch: Annotated[int, typer.Option(help="Domains split per branch-and-bound step.")] = 32,
    device: DeviceOption = "cpu",
    seed: int = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table (progress goes to stderr).")] = False,
) -> None:
    """Certify global robustness (GROCKET): per output j, an upper bound of |F_j(x') - F_j(x)|
    over every x, x' in the domain with ||x' - x||_inf <= delta, beside PGD's lower bound.

    Shows the input-free bound (the paper's), the input-aware one (with the network's
    pre-activation bounds over the domain), and branch and bound over difference signs,
    whose best bound so far is shown as it improves; --timeout is per output."""
    from verifriend.app.display import GlobalProgress, global_table
    from verifriend.app.globalrob import run_global
    from verifriend.app.settings import GlobalSettings, parse_domain, parse_outputs

    settings = GlobalSettings(model, delta, parse_outputs(outputs), timeout, parse_domain(domain),
                              dataset, data_dir, attack_starts, random_starts, attack_steps,
                              input_free, batch, device, seed)
    with GlobalProgress(err_console) as progress:
        result = run_global(settings, progress.show)
    if json_out:
        print(json.dumps(result))
        return
    console.print(global_table(result))


@app.command(epilog="Example: verifriend vnncomp net.onnx prop.vnnlib.gz --timeout 120 --out result.txt")
@user_errors
def vnncomp(
    model: Annotated[Path, typer.Argument(help="An ONNX network.")],
    spec: Annotated[Path, typer.Argument(help="A VNN-LIB spec (.vnnlib or .vnnlib.gz).")],
    out: Annotated[Path, typer.Option(help="Where to write the VNN-COMP result file.")],
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds for the whole run, loading included.")] = 300.0,
    config: ConfigFile = None,
    set_: SetOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Print each stage of the verifier, the time and the best bound so far to stderr.")] = False,
    device: DeviceOption = "cpu",
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
    settings = VnncompSettings(model, spec, timeout, out, verifier_config(config, set_),
                               device=device, verbose=verbose)
    # run as the `verifriend` executable, the process's start-up counts; called in-process
    # (e.g. by a test), the clock starts here
    elapsed = 0.0 if _process_start is None else time.monotonic() - _process_start
    verdict = run_vnncomp(settings, elapsed=elapsed)
    print(f"{verdict.status}  {verdict.time_s:.2f} s")


@app.command(epilog="Example: verifriend verify --model runs/nbc/model.pt --eps 0.05 --timeout 60 "
             "--per-class 10  |  verifriend verify --model net.onnx --dataset mnist --indices "
             "201:401 --eps 0.02 --timeout 30  |  verifriend verify --model net.onnx --indices "
             "0:1000 --eps 0.02 --timeout 30 --ray (one Ray worker per core; --ray-address "
             "HOST:PORT for a cluster)")
@user_errors
def verify(
    model: Annotated[Path, typer.Option(help="A .pt written by `verifriend train`, or an ONNX network taking pixels in [0, 1].")],
    eps: Annotated[float, typer.Option(help="Linf radius (pixel space, in [0, 1]).")],
    timeout: Annotated[float, typer.Option(help="Seconds per property.")],
    per_class: Annotated[int, typer.Option(help="Test properties per class.")] = 10,
    indices: Annotated[str | None, typer.Option(help="Test images START:STOP as the properties (e.g. 201:401) instead of --per-class.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set of an ONNX model (default mnist); a checkpoint's own otherwise.")] = None,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(
        help="Results file, one JSON line per property; an existing one is resumed "
             "(default: `<model stem>.verify.eps<E>.jsonl` next to the model).")] = None,
    seed: Annotated[int, typer.Option(help="Selection of the test images (0: the first of each class).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
    config: ConfigFile = None,
    set_: SetOption = None,
    ray: Annotated[bool, typer.Option("--ray", help="Verify the properties on Ray workers: a local Ray instance, one worker per core (needs `pip install 'verifriend[ray]'`); this process writes --out.")] = False,
    ray_address: Annotated[str | None, typer.Option(help="A running Ray cluster to use instead (host:port, or auto: the one on this machine); implies --ray.")] = None,
    shard: Annotated[str | None, typer.Option(help="I/N: verify only the properties at positions p % N == I of the selection, into a results file of its own (`.shardIofN` in the default name).")] = None,
    device: DeviceOption = "cpu",
) -> None:
    """Verify Linf robustness of test images with the complete verifier; resumes a killed run."""
    from verifriend.app.campaign import run_verify
    from verifriend.app.config import verifier_config
    from verifriend.app.display import campaign_table
    from verifriend.app.settings import CampaignSettings, parse_indices, parse_shard

    rng = None if indices is None else parse_indices(indices, "--indices")
    result = run_verify(CampaignSettings(model, eps, timeout, per_class, data_dir, out, seed,
                                         verifier_config(config, set_), dataset, rng,
                                         ray=ray_address or ("local" if ray else None),
                                         shard=None if shard is None else parse_shard(shard),
                                         device=device),
                        progress=not json_out)
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
