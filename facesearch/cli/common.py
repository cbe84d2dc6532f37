"""What every CLI command shares: the resolved settings, consoles and JSON output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:  # imported when a command asks: `facesearch --help` loads no settings model
    from facesearch.config import Settings

console = Console()
console_err = Console(stderr=True)


@dataclass
class CliState:
    home: Path | None = None
    key_file: Path | None = None

    def settings(self, **overrides: Any) -> Settings:
        from facesearch.config import load_settings

        return load_settings(self.home, key_file=self.key_file, **overrides)


def state_of(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
