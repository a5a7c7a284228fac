"""A friendliness comparison as text and pictures: the metric rows, a markdown table and a
bar chart (PNG bytes). Showing and writing them is the jobs' (:mod:`verifriend.app`)."""

from __future__ import annotations

import io

__all__ = ["DEMO_METRICS", "bar_chart", "format_value", "markdown_table", "render_figure"]

# (key in a model's metrics dict, column label) in display order
DEMO_METRICS: list[tuple[str, str]] = [
    ("clean_acc", "Clean acc %"),
    ("pgd_acc", "PGD-100 acc %"),
    ("stable_pct", "Stable %"),
    ("proved_ibp_pct", "Proved IBP %"),
    ("proved_crown_pct", "Proved CROWN %"),
    ("proved_pct", "Proved %"),
    ("proved_alpha_pct", "Proved alpha-CROWN %"),
    ("unsat_pct", "UNSAT %"),
    ("sat_pct", "SAT %"),
    ("timeout_pct", "Timeout %"),
    ("verify_time_s", "Verify time s"),
    ("verify_time_unsat_timeout_s", "Time over UNSAT+timeout s"),
    ("train_time_s", "Train time s"),
]


def format_value(v) -> str:
    """A metric as a table shows it: floats with one decimal, None as "-"."""
    if v is None:
        return "-"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def markdown_table(models: dict[str, dict]) -> str:
    """One column per model, one row per metric of :data:`DEMO_METRICS` (markdown)."""
    names = list(models)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label in DEMO_METRICS:
        if any(key in m for m in models.values()):
            lines.append(f"| {label} | " + " | ".join(format_value(models[n].get(key, "-")) for n in names) + " |")
    return "\n".join(lines)


def bar_chart(models: dict[str, dict], title: str = "") -> bytes:
    """Grouped bars of the percentage metrics, one group per metric, one bar per model (PNG)."""
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
    return render_figure(fig, ax, title)


def render_figure(fig, ax, title: str = "", legend: dict | None = None, fmt: str = "png"
                  ) -> bytes:
    """Title, legend, tight layout; the figure's bytes (120 dpi), and the figure closed."""
    import matplotlib.pyplot as plt

    if title:
        ax.set_title(title)
    ax.legend(**(legend or {}))
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=120)
    finally:
        plt.close(fig)
    return buf.getvalue()
