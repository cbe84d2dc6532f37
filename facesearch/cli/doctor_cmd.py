"""`facesearch doctor [--json]`: the misconfiguration audit (see facesearch/doctor.py and
docs/doctor.md). Exit status 2 when anything critical is found, 0 otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from facesearch.cli.common import console, print_json, state_of
from facesearch.errors import CredentialsInSettingsFile

if TYPE_CHECKING:  # imported where used: `facesearch --help` loads no database layer
    from facesearch.doctor import Finding

EXIT_CRITICAL = 2

_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def doctor(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as a JSON list.")
    ] = False,
) -> None:
    """Inspect this deployment for risky settings, weak secrets, stale credentials, a broken
    audit chain and secrets in logs; exit 2 on any critical finding."""
    from facesearch.doctor import has_critical, run_checks, settings_error

    state = state_of(ctx)
    try:
        try:
            settings = state.settings()
        except CredentialsInSettingsFile:  # refused to run with; the doctor reports them
            settings = state.settings(refuse_credentials=False)
    except Exception as exc:  # bad TOML or an invalid value: that is a finding too
        findings = [settings_error(exc)]
        home = state.home
    else:
        findings = run_checks(settings)
        home = settings.home
    if as_json:
        print_json([f.as_dict() for f in findings])
    else:
        _print_table(findings, str(home) if home else "the default data directory")
    if has_critical(findings):
        raise typer.Exit(EXIT_CRITICAL)


def _print_table(findings: list[Finding], where: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from facesearch.doctor import summary

    counts = summary(findings)
    if findings:
        table = Table(title=f"facesearch doctor: {escape(where)}", show_lines=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("finding")
        table.add_column("fix")
        for f in findings:
            style = _STYLE[f.severity]
            table.add_row(
                f"[{style}]{f.severity}[/]",
                escape(f.id),
                f"[bold]{escape(f.title)}[/]\n{escape(f.detail)}",
                escape(f.fix),
            )
        console.print(table)
    line = f"{counts['critical']} critical, {counts['warning']} warning(s), {counts['info']} info"
    if counts["critical"]:
        console.print(f"[bold red]FAIL[/]: {line}. Fix the critical findings first.")
    elif counts["warning"]:
        console.print(
            f"[yellow]OK with warnings[/]: {line}. Warnings do not fail the doctor, "
            "but each one is a risk worth fixing."
        )
    else:
        console.print(f"[green]OK[/]: {line}. No problems found at {escape(where)}.")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
