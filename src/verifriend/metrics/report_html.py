"""A run's report as one self-contained HTML page: the metric tables, the friendliness panels,
the radar chart and UNSAT curve, the cactus plot of the verifier's runs and the stable ReLUs
per layer. Pictures are inline PNG (base64), the style sheet is inline: the page loads nothing.

Input: ``models`` as :mod:`verifriend.metrics.paper` takes them (``{name: {"results": [one
metrics dict per radius], "timeout": s, ...}}``) and the verifier's logs as :class:`RunLog`;
reading a run folder is the job's (:mod:`verifriend.app.report`)."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field

from verifriend.metrics.report import (
    DEMO_METRICS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    bar_chart,
    format_value,
)

__all__ = ["SECTIONS", "RunLog", "report_page"]

# (id, heading) of every section, in page order
SECTIONS = [("summary", "Run"), ("metrics", "Metrics per model and radius"),
            ("verified", "Verified %"), ("friendliness", "Friendliness"),
            ("comparison", "Radar chart and UNSAT against radius"),
            ("cactus", "Verifier runs (cactus plot)"), ("layers", "Stable ReLUs per layer"),
            ("definitions", "What the metrics mean")]

TABLE_METRICS = [*DEMO_METRICS[:10], ("misclassified_pct", "Misclassified %"), *DEMO_METRICS[10:]]

DEFINITIONS = [
    ("Clean / PGD acc %", ("accuracy on the test images, unperturbed and under a PGD attack of "
     "the radius.")),
    ("Stable %", ("share of hidden ReLUs whose CROWN pre-activation bounds on the eps-ball do "
     "not straddle 0, averaged over the properties (per layer in the last section).")),
    ("Proved IBP / CROWN / alpha-CROWN %", ("properties whose robustness margins the incomplete "
     "bounds prove positive.")),
    ("UNSAT / SAT / Timeout %", ("verdicts of the complete verifier over all properties "
     "(misclassified images count as properties).")),
    ("Verify time s", ("mean time per correctly classified property; Time over UNSAT+timeout: "
     "the mean over those that ended UNSAT or timed out (the NBC paper's measure of proof "
     "effort).")),
    ("Subproblems", "mean branch-and-bound domains per property, from the verifier's log."),
]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f5f6f8}
header{background:#1f3a5f;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85;font-size:13px}
nav{padding:8px 32px;background:#e6eaf0;font-size:13px}nav a{margin-right:14px;color:#1f3a5f}
main{padding:8px 32px 40px;max-width:1240px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:16px 0;
padding:12px 18px}
h2{font-size:18px;margin:4px 0 10px;color:#1f3a5f}h3{font-size:15px;margin:22px 0 4px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:12px;margin:4px 0 8px}
th,td{border:1px solid #d5d9e0;padding:3px 7px}td{white-space:nowrap}th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{font-weight:700;
background:#e5f4e8}tr:nth-child(even) td{background-color:#fafbfc}
tr:nth-child(even) td.best{background:#e5f4e8}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:10px;
align-items:start}.grid img{width:100%}table.facts th{text-align:left}p.note{color:#5a6270;font-size:13px}
dl{font-size:13px}dt{font-weight:600}dd{margin:0 0 6px 16px}
"""


@dataclass
class RunLog:
    """One verifier log (a resumable campaign): whose it is, its radius and timeout, where it
    lies, its statistics (:func:`verifriend.app.campaign.summarize`) and the times of its
    solved (UNSAT or SAT) properties."""

    name: str
    eps: float
    timeout: float
    source: str
    summary: dict
    solved_times: list[float] = field(default_factory=list)


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def table(headers: list[str], rows: list[list], best: list[set[int]] | None = None,
          text_cols: int = 1) -> str:
    """An HTML table; cells are escaped; the first ``text_cols`` columns are text, the rest
    right-aligned numbers; ``best[i]`` holds the columns of row i to highlight."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            cls = [] if j < text_cols else ["num"]
            if best and j in best[i]:
                cls.append("best")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{esc(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(body) + "</tbody></table></div>")


def image(png: bytes, alt: str) -> str:
    """An inline PNG."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def grid(parts: list[str]) -> str:
    """Pictures side by side as the page's width allows."""
    return '<div class="grid">' + "".join(parts) + "</div>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 and v != 0 else f"{v:.1f}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _rows_at(models: dict[str, dict], eps: float) -> dict[str, dict]:
    """{name: metrics at radius eps} (model-level train time folded in) for the models that
    have that radius."""
    out = {}
    for name, res in models.items():
        for r in res.get("results", []):
            if r.get("eps") == eps:
                out[name] = {**r, "train_time_s": r.get("train_time_s", res.get("train_time_s"))}
    return out


def radii(models: dict[str, dict]) -> list[float]:
    """Every radius some model was evaluated at, ascending."""
    return sorted({r["eps"] for res in models.values() for r in res.get("results", [])})


def metrics_table(models: dict[str, dict]) -> str:
    """One row per model and radius, one column per metric that some row has; the best value
    among the models at a radius is highlighted (higher or lower, as the metric wants)."""
    per_eps = {e: _rows_at(models, e) for e in radii(models)}
    keys = [(k, lbl) for k, lbl in TABLE_METRICS
            if any(r.get(k) is not None for rows in per_eps.values() for r in rows.values())]
    headers = ["model", "eps", "properties", *(lbl for _, lbl in keys)]
    rows, best = [], []
    for eps, at in per_eps.items():
        marks = {}
        for j, (k, _) in enumerate(keys):
            vals = [r.get(k) for r in at.values() if r.get(k) is not None]
            if len(set(vals)) > 1 and (k in HIGHER_IS_BETTER or k in LOWER_IS_BETTER):
                marks[j] = max(vals) if k in HIGHER_IS_BETTER else min(vals)
        for name, r in at.items():
            rows.append([name, f"{eps:g}", r.get("n_properties", "-"),
                         *(_fmt(r.get(k)) for k, _ in keys)])
            best.append({3 + j for j, b in marks.items() if r.get(keys[j][0]) == b})
    return table(headers, rows, best, text_cols=2) + note(
        "Bold green: the best model at that radius (highest, or lowest for times, timeouts and "
        "subproblems).")


def verified_section(models: dict[str, dict]) -> str:
    """The verified-% table (one row per verifier and model) and, over several radii, its plot."""
    from verifriend.metrics.verified_table import verified_plot, verified_rows

    if any(r.get("clean_acc") is None for res in models.values() for r in res["results"]):
        return note("No accuracy recorded (verifier logs only): the UNSAT % are in the table "
                    "above.")
    try:
        rows = verified_rows(models)
    except ValueError:
        return note("The models were evaluated at different radii: no verified-% table.")
    if not rows:
        return note("No verifier figures recorded.")
    cols = [k for k in rows[0] if k.startswith("eps=")]
    body = table(["verifier", "model", "clean acc %", *cols],
                 [[r["verifier"], r["model"], format_value(r["accuracy"]),
                   *(format_value(r[c]) for c in cols)] for r in rows], text_cols=2)
    if len(cols) > 1:
        body += image(verified_plot(models, "verified % against radius"), "verified % against radius")
    return body


def friendliness_section(models: dict[str, dict]) -> str:
    """The two-panel friendliness chart, one per radius."""
    parts = []
    for eps in radii(models):
        at = _rows_at(models, eps)
        try:
            parts.append(f"<h3>eps = {eps:g}</h3>" + image(
                bar_chart(at), f"friendliness at eps {eps:g}: higher is better above, lower is "
                "better below"))
        except ValueError:
            parts.append(note(f"eps = {eps:g}: no friendliness metric recorded."))
    return note("Per radius, two panels: above, the metrics where higher is better (one 0-100 "
                "axis); below, those where lower is better (times, timeouts, subproblems), each "
                "on its own scale.") + "".join(parts) + note(
        "SAT % and misclassified % are in the table above; they are neither friendlier high nor "
        "low.")


def comparison_section(models: dict[str, dict]) -> str:
    """The paper's radar chart per radius (several models) and UNSAT % against the radius
    (several radii)."""
    from verifriend.metrics.paper import radar_chart, radar_scores, unsat_curve

    eps_list = radii(models)
    same = all([r["eps"] for r in res.get("results", [])] == eps_list for res in models.values())
    if not same:
        return note("The models were evaluated at different radii: no radar chart or curve.")
    parts = []
    if len(models) > 1:
        for eps in eps_list:
            labels, _ = radar_scores(models, eps)
            if len(labels) >= 3:
                parts.append(image(radar_chart(models, eps, f"eps = {eps:g} (best = 100)"),
                                   f"radar chart at eps {eps:g}"))
    has_unsat = all(r.get("unsat_pct") is not None for res in models.values()
                    for r in res["results"])
    if len(eps_list) > 1 and has_unsat:
        parts.append(image(unsat_curve(models, "UNSAT % against radius"), "UNSAT against radius"))
    if not parts:
        return note("One model and one radius (or no complete-verifier figures): nothing to "
                    "compare on a radar chart or a curve.")
    return grid(parts)


def cactus_section(logs: list[RunLog]) -> str:
    """The cactus plot of every verifier log, and a table of their verdicts."""
    from verifriend.metrics.report_plots import CactusSeries, cactus_plot

    if not logs:
        return note("No verifier logs in this folder (evaluate with --timeout writes them).")
    several = len({lg.timeout for lg in logs}) > 1
    series = {f"{lg.name}, eps={lg.eps:g}" + (f", {lg.timeout:g} s" if several else ""):
              CactusSeries(lg.solved_times, lg.summary.get("n", 0), lg.timeout, lg.name, lg.eps)
              for lg in logs}
    rows = []
    for lg in logs:
        c, s = lg.summary.get("counts", {}), lg.summary
        rows.append([lg.name, f"{lg.eps:g}", f"{lg.timeout:g}", s.get("n", 0), c.get("unsat", 0),
                     c.get("sat", 0), c.get("timeout", 0) + c.get("unknown", 0),
                     c.get("misclassified", 0), _fmt(s.get("mean_time_s")),
                     _fmt(s.get("mean_domains")), lg.source])
    return image(cactus_plot(series, "properties solved against time"), "cactus plot") + table(
        ["model", "eps", "timeout s", "properties", "unsat", "sat", "timeout", "misclassified",
         "mean time s", "mean subproblems", "log"], rows, text_cols=1)


def layers_section(models: dict[str, dict]) -> str:
    """Bars of the stable-ReLU share per layer, one panel per model; models without the
    figures are named as not recorded."""
    from verifriend.metrics.report_plots import layer_stability_chart

    data, missing = {}, []
    for name, res in models.items():
        by_eps = {r["eps"]: r["stable_pct_per_layer"] for r in res.get("results", [])
                  if r.get("stable_pct_per_layer")}
        if by_eps:
            data[name] = by_eps
        else:
            missing.append(name)
    parts = [image(layer_stability_chart(data), "stable ReLUs per layer")] if data else []
    if missing:
        parts.append(note(f"Per-layer stable ReLUs not recorded for: {', '.join(missing)}."))
    return "".join(parts) or note("Per-layer stable ReLUs not recorded.")


def summary_section(facts: list[tuple[str, str]], notes: list[str]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return (f'<table class="facts">{rows}</table>' if rows else "") + "".join(note(n) for n in notes)


def definitions_section() -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in DEFINITIONS) + "</dl>"


def report_page(title: str, subtitle: str, facts: list[tuple[str, str]], models: dict[str, dict],
                logs: list[RunLog], notes: list[str]) -> str:
    """The whole page. Sections about the models say so when there are none (a folder of
    verifier logs only)."""
    none = note("No model metrics in this folder (results.json), only verifier logs.")
    build: dict[str, Callable[[], str]] = {
        "summary": lambda: summary_section(facts, notes),
        "metrics": lambda: metrics_table(models) if models else none,
        "verified": lambda: verified_section(models) if models else none,
        "friendliness": lambda: friendliness_section(models) if models else none,
        "comparison": lambda: comparison_section(models) if models else none,
        "cactus": lambda: cactus_section(logs),
        "layers": lambda: layers_section(models) if models else none,
        "definitions": definitions_section,
    }
    nav = "".join(f'<a href="#{sid}">{esc(h)}</a>' for sid, h in SECTIONS)
    body = "\n".join(f'<section id="{sid}"><h2>{esc(h)}</h2>\n{build[sid]()}\n</section>'
                     for sid, h in SECTIONS)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
            f"<main>\n{body}\n</main></body></html>\n")
