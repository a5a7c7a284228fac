"""The run report's own pictures (PNG bytes): the cactus plot of the complete verifier's runs
and the share of stable ReLUs per layer. The friendliness panels, radar chart and UNSAT curve
are :mod:`verifriend.metrics.report`'s and :mod:`verifriend.metrics.paper`'s."""

from __future__ import annotations

import math
from dataclasses import dataclass

from verifriend.metrics.report import figure_bytes, render_figure

__all__ = ["CactusSeries", "cactus_plot", "layer_stability_chart"]


@dataclass
class CactusSeries:
    """One verifier run: the times (s) of its solved properties (UNSAT or SAT), how many
    properties it had in all, its timeout per property (0: unknown), and the model and radius
    it verified (a line's colour is its model's, its dash pattern its radius's)."""

    times: list[float]
    total: int
    timeout: float = 0.0
    model: str = ""
    eps: float = 0.0


def cactus_plot(series: dict[str, CactusSeries], title: str = "") -> bytes:
    """Properties solved against time, one step line per run (PNG): a point (t, n) says n
    properties were solved within t seconds each. The time axis is logarithmic when the
    times span more than two decades; each timeout is a dotted vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    times = [t for s in series.values() for t in s.times]
    timeouts = sorted({s.timeout for s in series.values() if s.timeout > 0})
    lo = max(min(times, default=1e-3), 1e-3)
    hi = max([*times, *timeouts, lo * 10])
    log = hi / lo > 100
    models = list(dict.fromkeys(s.model for s in series.values()))
    radii = sorted({s.eps for s in series.values()})
    dashes = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for label, s in series.items():
        colour = f"C{models.index(s.model) % 10}"
        ts = sorted(max(t, 1e-3) if log else t for t in s.times)
        xs = [ts[0] if ts else lo, *ts, hi]
        ys = [0, *range(1, len(ts) + 1), len(ts)]
        ax.step(xs, ys, where="post", color=colour, label=f"{label} ({len(ts)}/{s.total})",
                linestyle=dashes[radii.index(s.eps) % len(dashes)])
        if ts:
            ax.plot(ts, range(1, len(ts) + 1), "o", markersize=2.5, color=colour)
    for t in timeouts:
        ax.axvline(t, color="0.5", linestyle=":", linewidth=1)
        ax.annotate(f"timeout {t:g} s", (t, 0), xytext=(-4, 4), textcoords="offset points",
                    rotation=90, ha="right", va="bottom", fontsize=7, color="0.35")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("time per property (s)" + (", log scale" if log else ""))
    ax.set_ylabel("properties solved (UNSAT + SAT)")
    ax.set_ylim(0, max([s.total for s in series.values()] + [1]) * 1.05)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ncol = 1 if len(series) <= 8 else 2
    return render_figure(fig, ax, title, {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0),
                                          "fontsize": 7, "ncol": ncol})


def layer_stability_chart(models: dict[str, dict[float, list[float]]], title: str = "") -> bytes:
    """Per model, one panel of bars: the share (%) of each ReLU layer's neurons whose bounds
    do not straddle 0, one bar per radius (PNG). ``models``: name -> {eps: [% per layer]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(3, len(models))
    nrows = math.ceil(len(models) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols + 0.6, 3.2 * nrows + 0.5),
                             squeeze=False, layout="constrained")
    for ax, (name, by_eps) in zip(axes.flat, models.items()):
        width = 0.8 / max(len(by_eps), 1)
        for i, (eps, pct) in enumerate(by_eps.items()):
            xs = [j + 1 + (i - (len(by_eps) - 1) / 2) * width for j in range(len(pct))]
            bars = ax.bar(xs, pct, width, label=f"eps = {eps:g}", color=f"C{i % 10}")
            if len(pct) * len(by_eps) <= 16:
                ax.bar_label(bars, fmt="%.0f", fontsize=7)
        layers = max(len(p) for p in by_eps.values())
        ax.set_xticks(range(1, layers + 1))
        ax.set_xlabel("ReLU layer")
        ax.set_ylabel("stable ReLUs %")
        ax.set_ylim(0, 112)
        ax.set_title(name, fontsize=10)
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:  # the legend of the model with the most radii
        h, lb = ax.get_legend_handles_labels()
        handles, labels = (h, lb) if len(lb) > len(labels) else (handles, labels)
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 6),
               fontsize=8)
    if title:
        fig.suptitle(title)
    return figure_bytes(fig)
