"""The NBC paper's presentation of a friendliness comparison: methods as columns and
metrics by radius as rows (markdown, CSV), a radar chart with each metric scaled so that
the best method scores 100 (times inverted: the fastest scores 100), and UNSAT % against
the radius.

Input everywhere: ``{method name: evaluate_checkpoint(...) result}``, each holding
``results`` (one metrics dict per radius, the same radii for every method).
"""

from __future__ import annotations

import csv
import io

from verifriend.metrics.report import render_figure

# (key, label, higher is better) of the per-radius rows, in the paper's order
RADIUS_METRICS: list[tuple[str, str, bool]] = [
    ("unsat_pct", "UNSAT %", True),
    ("stable_pct", "Stable %", True),
    ("verify_time_s", "Time s", False),
    ("verify_time_unsat_timeout_s", "Time over UNSAT+timeout s", False),
    ("pgd_acc", "PGD-100 acc %", True),
]


def _radii(results: dict[str, dict]) -> list[float]:
    first = next(iter(results.values()))
    radii = [r["eps"] for r in first["results"]]
    for name, res in results.items():
        if [r["eps"] for r in res["results"]] != radii:
            raise ValueError(f"method {name} was evaluated at other radii than {radii}")
    return radii


def _value(res: dict, eps: float, key: str):
    for r in res["results"]:
        if r["eps"] == eps:
            return r.get(key)
    return None


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def paper_rows(results: dict[str, dict]) -> list[tuple[str, list]]:
    """(label, one value per method) rows: test accuracy, then each metric at each radius."""
    radii = _radii(results)
    rows = [("Test acc %", [res["results"][0]["clean_acc"] for res in results.values()])]
    for key, label, _ in RADIUS_METRICS:
        for eps in radii:
            vals = [_value(res, eps, key) for res in results.values()]
            if any(v is not None for v in vals):
                rows.append((f"{label} (eps={eps:g})", vals))
    return rows


def paper_markdown(results: dict[str, dict]) -> str:
    """The comparison as a markdown table in the paper's layout."""
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, vals in paper_rows(results):
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def paper_csv(results: dict[str, dict]) -> str:
    """One CSV row per (method, radius) with every metric of that evaluation."""
    keys = sorted({k for res in results.values() for r in res["results"] for k in r
                   if not isinstance(r[k], (list, dict, str))} - {"eps"})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "eps", *keys])
    for name, res in results.items():
        for r in res["results"]:
            w.writerow([name, r["eps"], *(r.get(k, "") for k in keys)])
    return buf.getvalue()


def radar_scores(results: dict[str, dict], eps: float) -> tuple[list[str], dict[str, list]]:
    """Axis labels and, per method, scores in [0, 100]: value / best * 100 for metrics where
    higher is better, best / value * 100 for times (so the fastest scores 100)."""
    axes = [("clean_acc", "Test acc", True)] + [(k, lbl.replace(" %", "").replace(" s", ""), up)
                                                for k, lbl, up in RADIUS_METRICS]
    raw = {name: [_value(res, eps, k) for k, _, _ in axes] for name, res in results.items()}
    keep = [i for i in range(len(axes)) if all(v[i] is not None for v in raw.values())]
    scores: dict[str, list] = {name: [] for name in results}
    for i in keep:
        vals = [raw[n][i] for n in results]
        up = axes[i][2]
        best = max(vals) if up else min(vals)
        for n, v in zip(results, vals, strict=True):
            if up:
                scores[n].append(100.0 * v / best if best > 0 else 100.0)
            else:
                scores[n].append(100.0 * best / v if v > 0 else 100.0)
    return [axes[i][1] for i in keep], scores


def radar_chart(results: dict[str, dict], eps: float, title: str = "") -> bytes:
    """The paper's radar chart at radius ``eps`` (see :func:`radar_scores`), as PNG bytes."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, scores = radar_scores(results, eps)
    angles = [2 * math.pi * i / len(labels) for i in range(len(labels))]
    fig, ax = plt.subplots(figsize=(6, 6.8), subplot_kw={"projection": "polar"})
    for name, vals in scores.items():
        ax.plot([*angles, angles[0]], [*vals, vals[0]], label=name)
        ax.fill([*angles, angles[0]], [*vals, vals[0]], alpha=0.1)
    ax.set_xticks(angles, labels)
    ax.set_ylim(0, 105)
    ax.set_title(title or f"eps = {eps:g} (best = 100)", pad=24)
    # the legend below the disc, so that neither the title nor an axis label is covered
    return render_figure(fig, ax, "", {"loc": "upper center", "bbox_to_anchor": (0.5, -0.08),
                                       "ncol": 3, "fontsize": 8})


def unsat_curve(results: dict[str, dict], title: str = "") -> bytes:
    """UNSAT % against the radius, one line per method, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    radii = _radii(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, res in results.items():
        ax.plot(radii, [_value(res, e, "unsat_pct") for e in radii], marker="o", label=name)
    ax.set_xlabel("eps")
    ax.set_ylabel("UNSAT %")
    ax.set_ylim(0, 105)
    return render_figure(fig, ax, title)
