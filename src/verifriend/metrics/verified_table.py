"""Verified % against radius for several models, in the layout of the VNN paper's Table I
(one row per model and verifier, one column per radius), as markdown, CSV and a plot.

Input: ``{model name: evaluate result}``, each result as :func:`verifriend.app.evaluate.evaluate`
returns it (``results`` holds one dict per radius). A verifier's column is there when every
model has it: CROWN always, alpha-CROWN with ``--alpha``, the complete verifier with a timeout.
"""

from __future__ import annotations

import csv
import io

from verifriend.metrics.report import format_value, render_figure

__all__ = ["verified_csv", "verified_markdown", "verified_plot", "verified_rows"]

# (key in a per-radius result, verifier label)
VERIFIERS = [("proved_crown_pct", "CROWN"), ("proved_alpha_pct", "alpha-CROWN"),
             ("unsat_pct", "complete")]


def _radii(results: dict[str, dict]) -> list[float]:
    radii = [[r["eps"] for r in res["results"]] for res in results.values()]
    if any(r != radii[0] for r in radii):
        raise ValueError("the models were evaluated at different radii")
    return radii[0] if radii else []


def verified_rows(results: dict[str, dict]) -> list[dict]:
    """One row per (verifier, model): ``model``, ``verifier``, ``accuracy`` (clean, first
    radius) and the verified % at each radius under the key ``"eps=<r>"``."""
    radii = _radii(results)
    rows = []
    for key, label in VERIFIERS:
        if not results or not all(all(r.get(key) is not None for r in res["results"])
                                  for res in results.values()):
            continue
        for name, res in results.items():
            timeout = res.get("timeout") or 0
            row = {"model": name,
                   "verifier": f"{label} ({timeout:g} s)" if key == "unsat_pct" else label,
                   "accuracy": res["results"][0]["clean_acc"]}
            row.update({f"eps={e:g}": r[key] for e, r in zip(radii, res["results"])})
            rows.append(row)
    return rows


def verified_markdown(results: dict[str, dict]) -> str:
    """The rows of :func:`verified_rows` as a markdown table."""
    rows = verified_rows(results)
    radii = [f"eps={e:g}" for e in _radii(results)]
    lines = ["| verifier | model | clean acc % | " + " | ".join(radii) + " |",
             "|---|---|---:|" + "---:|" * len(radii)]
    for r in rows:
        cells = [r["verifier"], r["model"], format_value(r["accuracy"]),
                 *(format_value(r[k]) for k in radii)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verified_csv(results: dict[str, dict]) -> str:
    """The rows of :func:`verified_rows` as CSV (one column per radius)."""
    rows = verified_rows(results)
    buf = io.StringIO()
    fields = ["verifier", "model", "accuracy", *(f"eps={e:g}" for e in _radii(results))]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def verified_plot(results: dict[str, dict], title: str = "") -> bytes:
    """Verified % against radius, one line per model and verifier (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    radii = _radii(results)
    styles = {"CROWN": "--", "alpha-CROWN": ":"}
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {name: f"C{i}" for i, name in enumerate(results)}
    for r in verified_rows(results):
        label = r["verifier"].split(" (")[0]
        ax.plot(radii, [r[f"eps={e:g}"] for e in radii], styles.get(label, "-"), marker="o",
                color=colors[r["model"]], label=f"{r['model']}, {r['verifier']}")
    ax.set_xlabel("radius (Linf, pixel space)")
    ax.set_ylabel("verified %")
    ax.set_ylim(-2, 102)
    return render_figure(fig, ax, title, legend={"fontsize": 7})
