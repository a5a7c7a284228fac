"""`verifriend report`: one self-contained HTML page of a run folder (tables, friendliness
panels, radar chart, UNSAT curve, cactus plot, stable ReLUs per layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from verifriend.cli_common import console, user_errors

EPILOG = ("Example: verifriend evaluate runs/nbc/model.pt --eps 0.02 --eps 0.05 --timeout 10 "
          "--out runs/nbc-eval && verifriend report runs/nbc-eval --out nbc.html")


@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(
        help="A folder written by `verifriend evaluate --out`, `experiment "
        "--out` or `demo --out`, or one holding `verifriend verify` logs (a single .jsonl log "
        "works too).")],
    out: Annotated[Path | None, typer.Option(
        help="The HTML file to write (default: RUN_DIR/report.html).")] = None,
) -> None:
    """Write one self-contained HTML report of a run: the metric and verified-% tables, the
    friendliness metrics in two panels (higher is better, lower is better), the radar chart
    and UNSAT-against-radius curve, a cactus plot of the verifier's runs and the share of
    stable ReLUs per layer. Images and styles are inline: the file opens anywhere, offline."""
    from verifriend.app.report import ReportSettings, run_report

    path = run_report(ReportSettings(run_dir, out))
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def add_report_command(app: typer.Typer) -> None:
    """Register `report` on the `verifriend` app."""
    app.command("report", epilog=EPILOG)(report)
