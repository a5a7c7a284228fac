"""What the jobs show on the terminal: rich tables and progress bars (the algorithm packages
report progress through callbacks and return plain data; this module draws them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from verifriend.metrics.report import DEMO_METRICS, format_value

# a batch-progress callback: (task description, batches done, batches in all, stats text)
BatchProgress = Callable[[str, int, int, str], None]


def comparison_table(models: dict[str, dict], title: str = "") -> Table:
    """A rich table with one column per model and one row per metric."""
    table = Table(title=title or None)
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    for key, label in DEMO_METRICS:
        if any(key in m for m in models.values()):
            table.add_row(label, *(format_value(m.get(key, "-")) for m in models.values()))
    return table


@contextmanager
def batch_bars(enabled: bool = True, console: Console | None = None
               ) -> Iterator[BatchProgress | None]:
    """A progress bar per task (one per training epoch), fed by a :data:`BatchProgress`
    callback; None (no callback: the loop skips its bookkeeping) when not ``enabled``."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), disable=not enabled,
                   console=console)
    tasks: dict[str, int] = {}

    def update(description: str, done: int, total: int, stats: str) -> None:
        if description not in tasks:
            tasks[description] = bar.add_task(description, total=total, stats="")
        bar.update(tasks[description], completed=done, stats=stats)

    with bar:
        yield update if enabled else None


def stage_printer(console: Console, start: float) -> Callable[[str], None]:
    """A verifier ``progress(message)`` callback that prints each message on ``console``
    after the seconds since ``start`` (a ``time.monotonic()`` reading)."""
    import time

    def say(message: str) -> None:
        console.print(f"{time.monotonic() - start:8.2f} s  {message}", highlight=False)

    return say


def tally_text(counts: dict[str, int]) -> str:
    """``unsat 12  sat 3  timeout 1  misclassified 2``: the non-zero verdict counts."""
    order = ("unsat", "sat", "timeout", "unknown", "misclassified")
    return "  ".join(f"{k} {counts[k]}" for k in order if counts.get(k))


@contextmanager
def campaign_bar(enabled: bool, total: int, decided: list[str], eps: float
                 ) -> Iterator[Callable[[int, str], None]]:
    """A campaign's progress bar on stderr: properties done of ``total`` with a running tally
    of the verdicts (``decided``: the statuses already in the results file). Yields a
    function to call with each newly decided property's test index and status."""
    if not enabled:
        yield lambda index, status: None
        return
    counts: dict[str, int] = {}
    for status in decided:
        counts[status] = counts.get(status, 0) + 1
    bar = Progress(TextColumn("verify eps={task.fields[eps]:g}"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("{task.fields[tally]}"),
                   TextColumn("[dim]{task.fields[last]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=False)
    bar.start()
    try:
        task = bar.add_task("verify", total=total, completed=len(decided), eps=eps,
                            tally=tally_text(counts), last="")

        def tick(index: int, status: str) -> None:
            counts[status] = counts.get(status, 0) + 1
            bar.update(task, advance=1, tally=tally_text(counts), last=f"#{index}: {status}")

        yield tick
    finally:
        bar.stop()


@contextmanager
def image_bar(enabled: bool, total: int | None) -> Iterator[Callable[[int, Any], None]]:
    """A transient bar on stderr over the images `bnn verify` decides; yields the
    ``progress(index, verdict)`` callback of ``bnn.verify.verify_dataset``."""
    with Progress(console=Console(stderr=True, soft_wrap=True), transient=True,
                  disable=not enabled) as bar:
        task = bar.add_task("verifying", total=total)

        def tick(i: int, v: Any) -> None:
            bar.update(task, advance=1, description=f"#{i}: {v.verdict}")

        yield tick


def campaign_table(result: Any, eps: float, timeout: float) -> Table:
    """A campaign's summary (:class:`~verifriend.app.campaign.CampaignSummary`) as a table."""
    s = result.summary

    def fmt(v, unit=""):
        return "-" if v is None else f"{v:.1f}{unit}" if unit == "%" else f"{v:.3g}{unit}"

    table = Table(title=f"{result.model} at eps={eps:g}, timeout {timeout:g} s ({s['n']} properties)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, v in (("UNSAT (proved)", fmt(s["unsat_pct"], "%")),
                     ("SAT (counterexample)", fmt(s["sat_pct"], "%")),
                     ("timeout / unknown", fmt(s["timeout_pct"], "%")),
                     ("misclassified", fmt(s["misclassified_pct"], "%")),
                     ("stable ReLUs (CROWN)", fmt(s["stable_pct"], "%")),
                     ("mean time", fmt(s["mean_time_s"], " s")),
                     ("mean time UNSAT+timeout", fmt(s["mean_time_unsat_timeout_s"], " s")),
                     ("mean subproblems", fmt(s["mean_domains"]))):
        table.add_row(label, v)
    return table


def bounds_table(result: dict, method: str) -> Table:
    """The `bounds` job's result: a row per output constraint."""
    table = Table(title=f"{method} bounds of a.Y - b ({result['time_s']:.3f} s)")
    for col in ("#", "clause", "lower", "upper"):
        table.add_column(col, justify="right")
    for i, c in enumerate(result["constraints"]):
        table.add_row(str(i), str(c["clause"]), f"{c['lower']:.6g}", f"{c['upper']:.6g}")
    return table


def bnn_verify_text(r: dict, eps: float) -> str:
    """The `bnn verify` job's summary, a few lines of plain text."""
    n = r["images"]
    return (
        f"{r['model']} on {r['dataset']}, eps {eps:g}, solver {r['backend']}: {n} images\n"
        f"  verified robust {r['robust']}  attack {r['attack']}  misclassified {r['misclassified']}"
        f"  unknown {r['unknown']}  replay failed {r['replay_failed']}\n"
        f"  verifiable accuracy {100 * r['verifiable_accuracy']:.2f}%   PGD-{r['pgd_steps']} accuracy "
        f"{100 * r['pgd_accuracy']:.2f}%   natural accuracy {100 * r['natural_accuracy']:.2f}%\n"
        f"  build {r['build_s']:.2f} s (once), solve mean {1000 * r['solve_mean_s']:.2f} ms, "
        f"max {1000 * r['solve_max_s']:.1f} ms; total per image {1000 * r['total_per_image_s']:.2f} ms\n"
        f"  sparsity {100 * r['sparsity']['total']:.1f}% (per layer "
        f"{', '.join(f'{100 * v:.1f}%' for v in r['sparsity']['layers'])})\n"
        f"  cardinality bound after the first layer: mean {r['bounds']['mean_after_first']:.2f}, "
        f"max {r['bounds']['max_after_first']}")


def bnn_train_text(out: Any, s: dict) -> str:
    """The `bnn train` job's summary line."""
    b = s["bounds"]
    pgd = (f", PGD-20 accuracy {100 * s['pgd_acc']:.2f}% at eps {s['pgd_eps']:g}"
           if "pgd_acc" in s else "")
    return (f"{out}: test accuracy {100 * s['test_acc']:.2f}%{pgd}, cardinality bound after "
            f"the first layer mean {b['mean_after_first']:.1f} max {b['max_after_first']}, "
            f"trained in {s['train_s']:.0f} s")


def sparsify_layer_line(r: Any) -> str:
    """One hidden layer of `sparsify`, as it finishes."""
    unit = "channel" if r.kind == "conv" else "neuron"
    per = "label-margin rows" if r.kind == "output" else f"one per {unit}"
    line = (f"layer {r.index} ({r.kind}): non-zeros {r.nonzeros_before} -> {r.nonzeros_after}, "
            f"{r.lps} LPs ({per}) in {r.seconds:.1f} s, largest relative change "
            f"{r.max_rel_change:.2g}")
    if r.kind == "conv":
        line += (f", LPs from {r.rows['rows']} of {r.rows['distinct']} distinct (sample, "
                 f"position) fields of {r.rows['positions']}")
        if r.rows["rows"] < r.rows["distinct"]:
            line += " (violated ones added)"
    if r.kept_original:
        line += f", {len(r.kept_original)} {unit}s kept as they were"
    if r.retries:
        line += f", eps lowered to {r.eps:g} ({'; '.join(t.split(':')[0] for t in r.retries)} " \
                "changed later patterns or labels)"
    return line


def sparsify_summary(result: dict) -> Table:
    """The per-layer table and accuracies of `sparsify`."""
    acc = result["test_accuracy"]
    val = result["validation"]
    title = (f"{result['out']}: validation labels kept {val['labels_kept']}/{val['of']}; test "
             "accuracy " + ", ".join(f"{k} {v:.2f} %" for k, v in acc.items()))
    t = Table(title=title, title_justify="left")
    for col in ("layer", "kind", "non-zeros before", "after", "LPs", "first LP rows", "seconds",
                "max rel. change", "eps"):
        t.add_column(col, justify="right")
    for r in result["layers"]:
        t.add_row(str(r["index"]), r["kind"], str(r["nonzeros_before"]),
                  str(r["nonzeros_after"]), str(r["lps"]), str(r["rows"]["rows"]),
                  f"{r['seconds']:.1f}", f"{r['max_rel_change']:.2g}", f"{r['eps']:g}")
    return t


class GlobalProgress:
    """The `global` job's progress on ``console``: a line per output with the attack's lower
    bound, the best certified bound so far (updated as it improves) and the domains."""

    def __init__(self, console: Console):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[stats]}"), console=console)
        self.tasks: dict[int, int] = {}
        self.attack: dict[int, float] = {}
        # not a terminal (a log file): a plain line per event instead of a live bar
        self.lines = not console.is_terminal

    def __enter__(self) -> Self:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def show(self, kind: str, e: dict) -> None:
        if kind == "stage":
            self.bar.console.print(e["text"], highlight=False)
            return
        j = e.get("output")
        if kind == "start":
            self.tasks[j] = self.bar.add_task(f"output {j}", total=e["timeout"],
                                              stats="attack ...")
            return
        task = self.tasks[j]
        if kind == "attack":
            self.attack[j] = e["attack_lower"]
            stats = f"PGD {e['attack_lower']:.4f}  CROWN {e['crown']:.4f}"
        elif kind == "improve":
            self.bar.update(task, completed=e["time_s"])
            stats = (f"PGD {self.attack[j]:.4f}  certified {e['bound']:.4f}  "
                     f"domains {e['domains']}")
        else:  # done
            self.bar.update(task, completed=self.bar.tasks[task].total)
            stats = (f"PGD {e['attack_lower']:.4f}  certified {e['certified']:.4f}  "
                     f"({e['ratio']:.2f}x)  domains {e['domains']}  {e['time_s']:.0f} s")
        self.bar.update(task, stats=stats)
        if self.lines:
            at = f"{e['time_s']:7.1f} s  " if kind == "improve" else ""
            self.bar.console.print(f"output {j}: {at}{stats}", highlight=False)


def global_table(result: dict) -> Table:
    """One row per output: PGD's lower bound and the certified bounds, with the ratio."""
    table = Table(title=f"global robustness, delta {result['delta']:g} over "
                        f"[{result['domain'][0]:g}, {result['domain'][1]:g}] "
                        f"(BaB on the {result['relaxation']} relaxation)")
    for col in ("output", "PGD lower", "input-free", "input-aware", "BaB", "certified",
                "certified / PGD", "time (s)", "domains"):
        table.add_column(col, justify="right")
    for r in result["outputs"]:
        table.add_row(str(r["output"]), f"{r['attack_lower']:.4f}", f"{r['input_free']:.4f}",
                      f"{r['input_aware']:.4f}", f"{r['bab']:.4f}", f"{r['certified']:.4f}",
                      f"{r['ratio']:.2f}", f"{r['time_s']:.1f}", str(r["domains"]))
    return table
