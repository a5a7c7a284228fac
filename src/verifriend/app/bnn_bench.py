"""Side-by-side solver benchmark on BNN verification queries: same encoding, same assumptions.

Each suite (a network, images, labels, a radius) is encoded once; every backend loads that
formula once and answers one query per correctly classified image. Times are solve times (the
build and load are reported apart); verdicts must agree wherever two backends both decided, and
every `sat` model must replay to a real misclassification.

`BENCH_NETS` lists the benchmark's networks as training recipes; `prepare_net` trains one into
a models directory or loads it from there when the saved recipe matches, so a second run only
solves.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from verifriend.app.outputs import check_out_dir, check_out_file, write_json_atomic
from verifriend.app.settings import BnnBenchSettings
from verifriend.bnn.encode import encode
from verifriend.bnn.integer import IntBNN
from verifriend.bnn.solvers import make_backend
from verifriend.bnn.solvers.base import FormulaTooLarge
from verifriend.bnn.verify import replays
from verifriend.errors import UserError


@dataclass
class Suite:
    name: str
    net: IntBNN
    images: np.ndarray  # [n, ...] values in [0, 1]
    labels: np.ndarray
    eps: float


@dataclass(frozen=True)
class BenchNet:
    """A benchmark network: its training recipe (BinMask + CBD + PGD) and verification radii."""

    name: str
    arch: str
    dataset: str
    radii: tuple[float, ...]  # verification eps, in [0, 1] pixel units
    train_eps: float
    epochs: int
    cbd: float
    mask_decay: float
    limit: int | None = None  # training examples
    images: int = 100  # test images per radius
    step: float | None = None  # input quantization step (None: the architecture's default)

    def recipe(self) -> dict:
        """What identifies the trained model (the radii and image count do not)."""
        d = asdict(self)
        for k in ("name", "radii", "images"):
            d.pop(k)
        if d["step"] is None:  # recipes saved before the field existed stay valid
            d.pop("step")
        return d


# Why these recipes: mask decay (sparsity) and CBD decide how hard the queries are. The digits
# net with the first recipe (cbd 2e-4, mask decay 3e-5, train eps 0.05) left 114 of 500
# first-layer neurons unstable per query and every solver (native, Exact, CP-SAT, Gluecard)
# timed out on 20 of 29 queries at 5 s; cbd 1e-3, mask decay 1e-4 and train eps 0.1 (twice the
# verified radius) give 94% accuracy and queries the native solver answers in about 1 ms.
BENCH_NETS: dict[str, BenchNet] = {n.name: n for n in (
    BenchNet("digits", "digits", "digits", (0.05,), 0.1, 15, 1e-3, 1e-4),
    BenchNet("mnist-quick", "conv-small", "mnist-embedded", (0.1,), 0.1, 4, 1e-4, 1e-4,
             images=50),
    BenchNet("mnist-mlp", "mlp", "mnist", (0.1,), 0.1, 5, 1e-4, 1e-4, limit=20000),
    BenchNet("conv-small", "conv-small", "mnist", (0.1,), 0.1, 6, 1e-5, 1e-5, limit=20000),
    BenchNet("conv-small-0.3", "conv-small", "mnist", (0.3,), 0.3, 6, 1e-5, 1e-5, limit=20000,
             step=0.61),
    BenchNet("conv-large", "conv-large", "mnist", (0.1,), 0.1, 4, 1e-5, 1e-5, limit=20000),
    BenchNet("cifar-conv-small-2", "conv-small", "cifar10", (2 / 255,), 2 / 255, 6, 1e-5, 1e-5,
             limit=20000),
    BenchNet("cifar-conv-small-8", "conv-small", "cifar10", (8 / 255,), 8 / 255, 6, 1e-5, 1e-5,
             limit=20000),
)}
QUICK_NETS = ("digits", "mnist-quick")
# conv-small-0.3: at the default step 1/4 every pixel can move a level at eps 0.3 (the
# background can light up) and PGD training collapsed (25.1% test accuracy); EEV's step 0.61
# (levels 0/1: only pixels in [0.31, 0.91) can flip) gives 95.6% and 65% verifiable at 0.3
FULL_NETS = ("digits", "mnist-mlp", "conv-small", "conv-small-0.3", "conv-large",
             "cifar-conv-small-2", "cifar-conv-small-8")
# CNF encodings of the first layer's thermometer cards reach tens of millions of clauses on
# the digits net (cardnetwrk 13M, totalizer 28M; mnist-quick: seqcounter 4.2M, the others
# 8-11M): the quick run skips a CNF backend above this
QUICK_MAX_CLAUSES = 5_000_000


def _cached(net: BenchNet, path: Path) -> bool:
    from verifriend.bnn.export import load_bnn

    if not path.exists():
        return False
    try:
        return load_bnn(path).meta.get("bench_recipe") == net.recipe()
    except UserError:
        return False


def prepare_net(net: BenchNet, models_dir: Path, *, data_dir: str | None = None,
                log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """The trained model of `net` in `models_dir`: loaded when its saved recipe matches, else
    trained now (`bnn_train.train_and_save`) and saved there. Without a progress bar, a log
    line per epoch."""
    from verifriend.app.bnn_train import train_and_save
    from verifriend.bnn.train import BNNTrainConfig

    path = models_dir / f"{net.name}.pt"
    if _cached(net, path):
        log(f"{net.name}: using {path}")
        return path
    if path.exists():
        log(f"{net.name}: {path} has another recipe; training again")
    log(f"{net.name}: training {net.arch} on {net.dataset} ({net.epochs} epochs)")
    cfg = BNNTrainConfig(epochs=net.epochs, eps=net.train_eps, cbd=net.cbd,
                         mask_decay=net.mask_decay, limit=net.limit)
    def epoch_line(epoch: int, _model, entry: dict) -> None:
        log(f"{net.name}: epoch {epoch}/{net.epochs}, loss {entry['loss']:.3f}, "
            f"test accuracy {100 * entry.get('test_acc', float('nan')):.2f}% "
            f"({entry['time_s']:.0f} s)")

    summary = train_and_save(net.arch, net.dataset, cfg, path, step=net.step, data_dir=data_dir,
                             meta={"bench_recipe": net.recipe()}, progress=progress,
                             on_epoch_end=None if progress else epoch_line)
    log(f"{net.name}: test accuracy {100 * summary['test_acc']:.2f}%, "
        f"trained in {summary['train_s']:.0f} s")
    return path


def _train_in_worker(net: BenchNet, models_dir: Path, data_dir: str | None, lines) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker
    prepare_net(net, models_dir, data_dir=data_dir, log=lines.put, progress=False)


def prepare_nets(names: list[str], models_dir: Path, *, data_dir: str | None = None,
                 workers: int = 1, strict: bool = True,
                 log: Callable[[str], None] = print) -> list[tuple[str, Path]]:
    """`prepare_net` for each name; the ones to train run in `workers` processes at once (one
    torch thread each). strict=False leaves out, with a log line, a net whose data is missing."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    todo = [n for n in names if not _cached(BENCH_NETS[n], models_dir / f"{n}.pt")]
    if todo:  # nets to train: their folder must take them, said before any training
        check_out_dir(models_dir, "--models-dir", files=[f"{n}.pt" for n in todo])
    failed: set[str] = set()
    if workers > 1 and len(todo) > 1:
        log(f"training {', '.join(todo)} in {min(workers, len(todo))} processes")
        ctx = multiprocessing.get_context("spawn")  # no fork of a process torch has threaded
        with ctx.Manager() as manager, \
                ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx) as pool:
            lines = manager.Queue()  # the workers' log lines, shown as they come
            jobs = {n: pool.submit(_train_in_worker, BENCH_NETS[n], models_dir, data_dir, lines)
                    for n in todo}
            for n, job in jobs.items():
                while not job.done():
                    with contextlib.suppress(queue.Empty):
                        log(lines.get(timeout=0.5))
                while not lines.empty():
                    log(lines.get())
                try:
                    job.result()
                except UserError as exc:
                    if strict:
                        raise
                    failed.add(n)
                    log(f"{n}: left out ({exc})")
    out = []
    for n in names:
        if n in failed:
            continue
        try:
            out.append((n, prepare_net(BENCH_NETS[n], models_dir, data_dir=data_dir, log=log)))
        except UserError as exc:
            if strict:
                raise
            log(f"{n}: left out ({exc})")
    return out


def _queries(enc, suite: Suite) -> list[tuple[int, list[int]]]:
    """(image index, assumptions) for the images the network classifies correctly."""
    out = []
    for i, (x, y) in enumerate(zip(suite.images, suite.labels, strict=True)):
        if not suite.net.misclassified(suite.net.quantize(x), int(y)):
            lo, hi = enc.level_box(x, suite.eps)
            out.append((i, enc.assumptions(lo, hi, int(y))))
    return out


def _load(name: str, formula, max_clauses: int | None):
    backend = make_backend(name)
    if max_clauses is not None and hasattr(backend, "max_clauses"):
        backend.max_clauses = max_clauses
    t0 = time.perf_counter()
    backend.load(formula)
    return backend, time.perf_counter() - t0


def run_suite(
    suite: Suite,
    backends: list[str],
    time_limit: float,
    *,
    fresh_native: bool = True,
    max_clauses: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run one suite on every backend; returns per-backend times and verdicts.

    With fresh_native, the native solver also answers each query on a newly loaded copy
    (no learned clauses, activities or phases carried over), to measure what reusing one
    encoding buys. A CNF backend whose encoding passes `max_clauses` is recorded as skipped.
    """
    enc = encode(suite.net)
    queries = _queries(enc, suite)
    result: dict = {"name": suite.name, "eps": suite.eps, "time_limit_s": time_limit,
                    "images": len(suite.images),
                    "queries": len(queries), "build_s": enc.build_s,
                    "vars": enc.formula.num_vars, "cards": len(enc.formula.cards),
                    "clauses": len(enc.formula.clauses), "backends": {}, "skipped": {}}
    names = list(backends)
    if fresh_native and "native" in names:
        names.insert(names.index("native") + 1, "native-fresh")
    for name in names:
        fresh = name == "native-fresh"
        try:
            backend, load_s = _load("native" if fresh else name, enc.formula, max_clauses)
        except FormulaTooLarge as exc:
            result["skipped"][name] = str(exc)
            if progress is not None:
                progress(f"{suite.name}: {name:<28} skipped ({exc})")
            continue
        times, verdicts, bad_models = [], [], 0
        for i, assume in queries:
            if fresh:
                backend.close()
                backend, t = _load("native", enc.formula, None)
                load_s += t
            r = backend.solve(assume, time_limit)
            times.append(r.time_s)
            verdicts.append(r.status)
            if r.status == "sat" and not replays(
                enc, r.model, suite.images[i], int(suite.labels[i]), suite.eps
            ):
                bad_models += 1
        backend.close()
        t = np.array(times) if times else np.zeros(1)
        result["backends"][name] = {
            "load_s": load_s, "total_s": float(t.sum()), "mean_s": float(t.mean()),
            "median_s": float(np.median(t)), "max_s": float(t.max()),
            "unknown": verdicts.count("unknown"), "sat": verdicts.count("sat"),
            "unsat": verdicts.count("unsat"), "bad_models": bad_models, "verdicts": verdicts,
            "times": times,
        }
        if progress is not None:
            b = result["backends"][name]
            progress(f"{suite.name}: {name:<28} total {b['total_s']:8.3f} s  "
                     f"median {1000 * b['median_s']:8.2f} ms  unknown {b['unknown']}  "
                     f"(load {load_s:.1f} s)")
    result["agree"] = _agree(result["backends"])
    return result


def _agree(backends: dict) -> bool:
    if any(b["bad_models"] for b in backends.values()):
        return False
    per_query = zip(*(b["verdicts"] for b in backends.values()), strict=True)
    return all(len({v for v in q if v != "unknown"}) <= 1 for q in per_query)


def _counted_times(suite: dict, name: str) -> list[float]:
    """Solve times with every unknown query counted at the time limit (PySAT's CaDiCaL cannot
    be interrupted and overshoots it; an overshoot says nothing about the solver)."""
    b, limit = suite["backends"][name], suite.get("time_limit_s")
    return [min(t, limit) if v == "unknown" and limit is not None else t
            for t, v in zip(b["times"], b["verdicts"], strict=True)]


def summarize(suites: list[dict]) -> dict:
    """Totals over suites per backend, the agreement flag and ratios to the native solver.

    A backend's total counts each unknown query at its time limit (a lower bound of its real
    time); its ratio compares it with the native solver's total on the same suites (those the
    backend ran: a CNF backend may have been skipped on some).
    """
    names: list[str] = []
    for s in suites:
        names += [n for n in s["backends"] if n not in names]
    backends = {}
    for name in names:
        ran = [s for s in suites if name in s["backends"]]
        times = np.array([x for s in ran for x in _counted_times(s, name)])
        b = {
            "total_s": float(times.sum()) if len(times) else 0.0,
            "mean_s": float(times.mean()) if len(times) else 0.0,
            "median_s": float(np.median(times)) if len(times) else 0.0,
            "max_s": float(times.max()) if len(times) else 0.0,
            "load_s": float(sum(s["backends"][name]["load_s"] for s in ran)),
            "unknown": int(sum(s["backends"][name]["unknown"] for s in ran)),
            "queries": len(times),
            "suites": [s["name"] for s in ran],
        }
        native = sum(sum(_counted_times(s, "native")) for s in ran if "native" in s["backends"])
        if native > 0 and all("native" in s["backends"] for s in ran):
            b["ratio_to_native"] = b["total_s"] / native
        backends[name] = b
    return {"agree": all(s["agree"] for s in suites), "backends": backends, "suites": suites}


def format_summary(out: dict) -> str:
    """The per-backend table, fastest first, with ratios to the native solver."""
    lines = [f"agree: {out['agree']}",
             (f"{'backend':<30} {'total s':>9} {'mean ms':>9} {'median ms':>10} {'max ms':>9} "
              f"{'unknown':>7} {'queries':>7} {'x native':>9} {'load s':>8}")]
    for name, b in sorted(out["backends"].items(), key=lambda kv: kv[1]["total_s"]):
        ratio = b.get("ratio_to_native")
        lines.append(
            f"{name:<30} {b['total_s']:9.3f} {1000 * b['mean_s']:9.2f} "
            f"{1000 * b['median_s']:10.2f} {1000 * b['max_s']:9.1f} {b['unknown']:7d} "
            f"{b['queries']:7d} {'' if ratio is None else f'{ratio:9.1f}':>9} "
            f"{b['load_s']:8.2f}")
    lines.append("total: solve time, a query at its limit counted at the limit; load s: loading "
                 "the formula (once; native-fresh: once per query)")
    skipped = {(s["name"], n): why for s in out["suites"] for n, why in s.get("skipped", {}).items()}
    for (suite, name), why in skipped.items():
        lines.append(f"skipped on {suite}: {name} ({why})")
    return "\n".join(lines)


def slim(out: dict) -> dict:
    """The JSON the benchmark prints: agreement and per-backend figures, no per-query lists."""
    suites = [{k: v for k, v in s.items() if k != "backends"} | {
        "backends": {n: {k: v for k, v in b.items() if k not in ("verdicts", "times")}
                     for n, b in s["backends"].items()}} for s in out["suites"]]
    return {"agree": out["agree"], "backends": out["backends"], "suites": suites}


FULL_BACKENDS = ("native", "exact", "cpsat", "pysat-gluecard4", "pysat-minicard", "z3",
                 "pysat-seqcounter-minisat22", "pysat-cardnetwrk-minisat22",
                 "pysat-totalizer-cadical153", "pysat-sortnetwrk-cadical153")
# PySAT's CaDiCaL cannot be interrupted: its queries overshoot the limit (about 12 s a query
# at a 1 s limit on mnist-mlp's CNF), too slow for the quick run
QUICK_BACKENDS = ("native", "exact", "cpsat", "pysat-gluecard4", "z3",
                  "pysat-seqcounter-minisat22")


def suites_for(models: list[tuple[str, Path]], radii: list[float] | None, images: int | None,
               *, dataset: str | None = None, data_dir: str | None = None,
               default_images: dict[str, int] | None = None) -> list[Suite]:
    """One suite per (model, radius): the first `images` test images of the model's data set.

    `models`: (name, path) pairs; `radii` None: a bench net's own radii (by name), for another
    model its training eps (0.1 when unrecorded); `default_images`: per-name image counts
    when `images` is None (else 100).
    """
    from verifriend.app.bnn_verify import load_with_test_set
    from verifriend.bnn.export import export_integer

    suites = []
    for name, path in models:
        model, _, xte, yte = load_with_test_set(path, dataset, data_dir)
        n = images or (default_images or {}).get(name, 100)
        net = export_integer(model)
        trained_eps = model.meta.get("summary", {}).get("config", {}).get("eps") or 0.1
        own = BENCH_NETS[name].radii if name in BENCH_NETS else (float(trained_eps),)
        for eps in radii or own:
            suites.append(Suite(f"{name}@{eps:.4g}", net, xte[:n].numpy().astype(np.float64),
                                yte[:n].numpy(), eps))
    return suites


def run_bench(models: list[Path] | None = None, *, nets: list[str] | None = None,
              quick: bool = False, models_dir: Path = Path("runs/bnn-bench"),
              backends: list[str] | None = None, radii: list[float] | None = None,
              images: int | None = None, time_limit: float | None = None,
              max_clauses: int | None = None, dataset: str | None = None,
              data_dir: str | None = None, workers: int = 2,
              log: Callable[[str], None] = print) -> dict:
    """:func:`bench` from keyword arguments."""
    def tup(v):
        return None if v is None else tuple(v)

    return bench(BnnBenchSettings(tuple(models or ()), quick, tup(nets), Path(models_dir),
                                  tup(backends), tup(radii), images, time_limit, max_clauses,
                                  dataset, data_dir, workers), log=log)


def _backends(s: BnnBenchSettings, log: Callable[[str], None]) -> list[str]:
    """The backends to run: the named ones (each must be installed), or the defaults that
    are installed here (the rest said in the log)."""
    from verifriend.bnn.solvers import available_backends

    if s.backends:
        for name in s.backends:  # a clear error for an unknown or missing backend, before work
            make_backend(name).close()
        return list(s.backends)
    have = set(available_backends())
    wanted = QUICK_BACKENDS if s.quick else FULL_BACKENDS
    missing = [b for b in wanted if b not in have]
    if missing:
        log(f"not installed here, left out: {', '.join(missing)}")
    return [b for b in wanted if b in have]


def bench(settings: BnnBenchSettings, *, log: Callable[[str], None] = print) -> dict:
    """The whole benchmark: networks (given files, or the bench nets trained or loaded), suites,
    every backend on every suite, the summary (`summarize`).

    Defaults: quick runs QUICK_NETS on QUICK_BACKENDS, 50 images a net, with a 1 s limit and
    skips CNF backends above QUICK_MAX_CLAUSES; the full run takes FULL_NETS (those whose data
    set is missing are left out, said in the log) on FULL_BACKENDS with a 2 s limit. Default
    backends that are not installed are left out (said in the log); named ones must be
    installed. Networks to train are trained `workers` at a time.
    """
    s = settings
    chosen = _backends(s, log)
    time_limit = s.timeout if s.timeout is not None else 1.0 if s.quick else 2.0
    images = s.images if s.images is not None or not s.quick else 50
    max_clauses = (s.max_clauses if s.max_clauses is not None or not s.quick
                   else QUICK_MAX_CLAUSES)
    if s.models:
        pairs = [(Path(p).stem, Path(p)) for p in s.models]
    else:
        names = list(s.nets or (QUICK_NETS if s.quick else FULL_NETS))
        unknown = [n for n in names if n not in BENCH_NETS]
        if unknown:
            raise UserError(f"Unknown bench network(s) {', '.join(unknown)}: choose from "
                            f"{', '.join(BENCH_NETS)}.")
        # nets asked for by name must be there; of the default list, missing data leaves out
        pairs = prepare_nets(names, s.models_dir, data_dir=s.data_dir, workers=s.workers,
                             strict=bool(s.nets), log=log)
    suites = suites_for(pairs, list(s.radii) if s.radii else None, images, dataset=s.dataset,
                        data_dir=s.data_dir,
                        default_images={n: BENCH_NETS[n].images for n in BENCH_NETS})
    results = [run_suite(suite, chosen, time_limit, max_clauses=max_clauses, progress=log)
               for suite in suites]
    out = summarize(results)
    out["time_limit_s"] = time_limit
    return out


def run_bnn_bench(settings: BnnBenchSettings, *, log: Callable[[str], None] = print) -> dict:
    """The `bnn bench` job: the output file is checked before the benchmark runs, and
    written (everything, per-query verdicts and times included) after it."""
    if settings.out is not None:
        check_out_file(settings.out, "--out")
    result = bench(settings, log=log)
    if settings.out is not None:
        write_json_atomic(settings.out, result, indent=1, default=float)
    return result
