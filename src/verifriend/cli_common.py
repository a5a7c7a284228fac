"""What every `verifriend` command shares: the consoles, the user-error guard and the common
options."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from verifriend.errors import UserError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def user_errors(fn):
    """Turn a UserError into one sentence on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


DataDir = Annotated[
    str | None,
    typer.Option(help="Directory with the data set files (else $VERIFRIEND_DATA, ../shared/datasets)."),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="The verifier's options as YAML (`verifriend config verifier` "
                                  "prints them all, with their defaults); --set overrides it."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Set one verifier option, over --config "
                 "(a dotted KEY for a section: --set bab.branching=fsb); repeatable."),
]
