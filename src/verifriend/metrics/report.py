"""Results files, tables and plots: JSON written atomically, a rich table, report.md + PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path

from rich.table import Table

# the atomic writers live in verifriend.app.outputs; re-exported for existing callers
from verifriend.app.outputs import write_json_atomic, write_text_atomic

__all__ = ["DEMO_METRICS", "bar_chart", "comparison_table", "markdown_table", "save_figure",
           "write_json_atomic", "write_text_atomic"]

# (key in a model's metrics dict, column label) in display order
DEMO_METRICS: list[tuple[str, str]] = [
    ("clean_acc", "Clean acc %"),
    ("pgd_acc", "PGD-100 acc %"),
    ("stable_pct", "Stable %"),
    ("proved_ibp_pct", "Proved IBP %"),
    ("proved_crown_pct", "Proved CROWN %"),
    ("proved_pct", "Proved %"),
    ("unsat_pct", "UNSAT %"),
    ("sat_pct", "SAT %"),
    ("timeout_pct", "Timeout %"),
    ("verify_time_s", "Verify time s"),
    ("verify_time_unsat_timeout_s", "Time over UNSAT+timeout s"),
    ("train_time_s", "Train time s"),
]


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def comparison_table(models: dict[str, dict], title: str = "") -> Table:
    """A rich table with one column per model and one row per metric."""
    table = Table(title=title or None)
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    for key, label in DEMO_METRICS:
        if any(key in m for m in models.values()):
            table.add_row(label, *(_fmt(m.get(key, "-")) for m in models.values()))
    return table


def markdown_table(models: dict[str, dict]) -> str:
    """The same comparison as :func:`comparison_table`, in markdown."""
    names = list(models)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label in DEMO_METRICS:
        if any(key in m for m in models.values()):
            lines.append(f"| {label} | " + " | ".join(_fmt(models[n].get(key, "-")) for n in names) + " |")
    return "\n".join(lines)


def bar_chart(models: dict[str, dict], path: str | os.PathLike, title: str = "") -> None:
    """Grouped bars of the percentage metrics, one group per metric, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, lbl) for k, lbl in DEMO_METRICS if k.endswith(("_pct", "_acc"))]
    keys = [(k, lbl) for k, lbl in keys if all(k in m for m in models.values())]
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, m) in enumerate(models.items()):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(keys))]
        bars = ax.bar(xs, [m[k] for k, _ in keys], width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(keys)), [lbl for _, lbl in keys], rotation=20, ha="right")
    ax.set_ylim(0, 110)
    ax.set_ylabel("%")
    save_figure(fig, ax, path, title)


def save_figure(fig, ax, path: str | os.PathLike, title: str = "", legend: dict | None = None
                ) -> None:
    """Title, legend, tight layout, write ``path`` (120 dpi, atomically) and close the figure."""
    import matplotlib.pyplot as plt

    from verifriend.app.outputs import write_bytes_atomic

    if title:
        ax.set_title(title)
    ax.legend(**(legend or {}))
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    finally:
        plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
