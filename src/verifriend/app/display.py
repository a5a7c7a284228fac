"""What the jobs show on the terminal: rich tables and progress bars (the algorithm packages
report progress through callbacks and return plain data; this module draws them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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
