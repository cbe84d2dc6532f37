"""The `facesearch` command line. Each command group lives in its own module and is listed here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from facesearch.cli import (
    admin_cmd,
    audit_cmd,
    core,
    doctor_cmd,
    eval_cmd,
    remote,
    serve_cmd,
    worker_cmd,
)
from facesearch.cli.common import CliState, console_err
from facesearch.errors import FacesearchError

app = typer.Typer(
    name="facesearch",
    help="Self-hosted face search: ingest galleries, search by photo, verify, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Data directory (default: $FACESEARCH_HOME, else the per-user data directory).",
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="Master key file (default: $FACESEARCH_KEY_FILE, else "
            "the per-user config directory).",
        ),
    ] = None,
) -> None:
    ctx.obj = CliState(home=home, key_file=key_file)


for group in (core, eval_cmd, serve_cmd, admin_cmd, audit_cmd, remote, doctor_cmd, worker_cmd):
    group.register(app)


def main() -> None:
    try:
        app()
    except FacesearchError as exc:
        console_err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        console_err.print("[yellow]interrupted[/]; committed work is kept, run again to resume")
        sys.exit(130)
