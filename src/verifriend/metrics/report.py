"""A friendliness comparison as text and pictures: the metric rows, a markdown table and a
two-panel bar chart (higher-is-better above, lower-is-better below; PNG bytes). Showing and
writing them is the jobs' (:mod:`verifriend.app`)."""

from __future__ import annotations

import io

__all__ = ["DEMO_METRICS", "HIGHER_IS_BETTER", "LOWER_IS_BETTER", "bar_chart", "figure_bytes",
           "format_value", "markdown_table", "render_figure"]

# (key in a model's metrics dict, column label) in display order
DEMO_METRICS: list[tuple[str, str]] = [
    ("clean_acc", "Clean acc %"),
    ("pgd_acc", "PGD acc %"),
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
    ("verify_domains", "Subproblems"),
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


# the friendliness metrics where a larger value is friendlier, and those where a smaller one
# is (the times, the timeouts and the branch-and-bound work); SAT % is in neither
HIGHER_IS_BETTER = ("clean_acc", "pgd_acc", "stable_pct", "proved_ibp_pct", "proved_crown_pct",
                    "proved_pct", "proved_alpha_pct", "unsat_pct")
LOWER_IS_BETTER = ("timeout_pct", "verify_time_s", "verify_time_unsat_timeout_s",
                   "verify_domains", "train_time_s")


def bar_chart(models: dict[str, dict], title: str = "") -> bytes:
    """The friendliness metrics of several models in two panels (PNG): above, the
    higher-is-better percentages as grouped bars on one 0-100 axis; below, one small axis per
    lower-is-better metric (timeout %, times, subproblems), each on its own scale. A metric
    shows when some model has it (a model without it gets an "n/a" mark)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(DEMO_METRICS)
    up = [k for k in HIGHER_IS_BETTER if any(m.get(k) is not None for m in models.values())]
    down = [k for k in LOWER_IS_BETTER if any(m.get(k) is not None for m in models.values())]
    if not up and not down:
        raise ValueError("no friendliness metric to draw")
    fig = plt.figure(figsize=(10, 3.9 * bool(up) + 3.1 * bool(down)), layout="constrained")
    panels = fig.subfigures(int(bool(up)) + int(bool(down)), 1, squeeze=False,
                            height_ratios=[r for r, k in ((1.25, up), (1.0, down)) if k])[:, 0]
    if up:
        _higher_panel(panels[0], models, [(k, labels[k]) for k in up])
    if down:
        _lower_panel(panels[-1], models, [(k, labels[k]) for k in down], legend=not up)
    if title:
        fig.suptitle(title)
    return figure_bytes(fig)


def _value_text(v) -> str:
    return "n/a" if v is None else f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}"


def _higher_panel(sub, models: dict[str, dict], keys: list[tuple[str, str]]) -> None:
    sub.suptitle("Higher is better", fontweight="bold", fontsize=11)
    ax = sub.subplots()
    width = 0.8 / max(len(models), 1)
    for i, (name, m) in enumerate(models.items()):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(keys))]
        vals = [m.get(k) for k, _ in keys]
        bars = ax.bar(xs, [0.0 if v is None else v for v in vals], width, label=name,
                      color=f"C{i % 10}")
        ax.bar_label(bars, [_value_text(v) for v in vals], fontsize=7 if len(models) < 5 else 5)
    ax.set_xticks(range(len(keys)), [lbl for _, lbl in keys], rotation=20, ha="right")
    ax.set_ylim(0, 112)
    ax.set_ylabel("%")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _lower_panel(sub, models: dict[str, dict], keys: list[tuple[str, str]],
                 legend: bool) -> None:
    import textwrap

    sub.suptitle("Lower is better (each on its own scale)", fontweight="bold", fontsize=11)
    axes = sub.subplots(1, len(keys), squeeze=False)[0]
    for ax, (key, label) in zip(axes, keys, strict=True):
        vals = [m.get(key) for m in models.values()]
        bars = ax.bar(range(len(vals)), [0.0 if v is None else v for v in vals],
                      color=[f"C{i % 10}" for i in range(len(vals))], label=list(models))
        ax.bar_label(bars, [_value_text(v) for v in vals], fontsize=7)
        ax.set_title(textwrap.fill(label, 16), fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
        top = max([v for v in vals if v is not None] + [0.0])
        ax.set_ylim(0, 1.18 * (max(top, 10.0) if key == "timeout_pct" else top or 1.0))
    if legend:
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)


def figure_bytes(fig, fmt: str = "png", dpi: int = 120) -> bytes:
    """The figure's bytes (``dpi``), and the figure closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def render_figure(fig, ax, title: str = "", legend: dict | None = None, fmt: str = "png"
                  ) -> bytes:
    """Title, legend, tight layout; the figure's bytes (120 dpi), and the figure closed."""
    if title:
        ax.set_title(title)
    ax.legend(**(legend or {}))
    fig.tight_layout()
    return figure_bytes(fig, fmt)
