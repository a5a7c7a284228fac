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


# the commands (by function name) that resume an interrupted run when started again
RESUMABLE = frozenset({"train", "evaluate", "experiment", "verify", "demo"})
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C


def user_errors(fn):
    """Turn a UserError into one sentence on stderr and exit code 2, and Ctrl-C into
    "interrupted" (with how to resume, for the :data:`RESUMABLE` commands) and exit code
    130; no traceback for either."""
    resumes = fn.__name__ in RESUMABLE

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            from rich.markup import escape  # a message's [brackets] are text, not markup

            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; run the same command again to resume" if resumes
                              else "interrupted", highlight=False)
            raise typer.Exit(INTERRUPTED_EXIT) from None

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
DeviceOption = Annotated[
    str,
    typer.Option("--device", help="Where bounds, attacks and training run: cpu or cuda "
                                  "(the exact MILP/LP stages always run on the CPU)."),
]
