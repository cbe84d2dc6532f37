"""`facesearch audit ...`: prove the audit chain, export it signed, verify an export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from facesearch.cli.common import console, console_err, print_json, state_of

audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Prove the database's audit chain with the deployment's key, against its signed
    checkpoints (audit_anchor_dir), and check the append-only triggers; exit 1 naming the
    first bad entry, a truncation, a rehash or the missing triggers."""
    from facesearch.deployment import Deployment
    from facesearch.security import audit

    dep = Deployment.open(state_of(ctx).settings())
    try:
        anchor = audit.read_anchor_of(dep.keys, dep.anchor_dir)
        with dep.db.session() as s:
            report = audit.verify_chain(s, anchor=anchor)
    finally:
        dep.close()
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "first_bad_id": report.first_bad_id,
                "problem": report.problem,
                "checkpoints": report.checkpoints,
                "anchored_length": report.anchored_length,
                "anchor_file": str(anchor.path),
            }
        )
    elif report.ok:
        console.print(
            f"[green]audit chain intact[/]: {report.entries} entries, "
            f"{report.checkpoints} signed checkpoints (longest {report.anchored_length})"
        )
        if not anchor.exists and report.entries:
            console_err.print(
                f"[yellow]warning[/]: no checkpoint file at {anchor.path}; a truncated or "
                "rehashed chain cannot be told from an intact one"
            )
    else:
        console_err.print(
            f"[bold red]audit chain broken[/] at entry {report.first_bad_id} "
            f"(position {report.first_bad_position}): {report.problem}"
        )
    if not report.ok:
        sys.exit(1)


@audit_app.command("export")
def export_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="JSON Lines file to write")],
    org: Annotated[
        str | None, typer.Option("--org", help="only this organisation's entries")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write a signed JSON Lines export for an external auditor (the export is audited)."""
    from facesearch.deployment import Deployment
    from facesearch.security import audit
    from facesearch.security.tenancy import org_by_name

    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            org_id = org_by_name(s, org).id if org else None
            result = audit.export(s, out, org_id, keys=dep.keys)
    finally:
        dep.close()
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"wrote {result.entries} entries to {out}")
    console.print(f"signed with Ed25519 public key {result.public_key}")
    console.print(
        f"key fingerprint {result.fingerprint}: give it to the auditor through a "
        "separate channel; they check it with `facesearch audit verify-export "
        f"{out.name} --public-key {result.fingerprint}`"
    )


@audit_app.command("public-key")
def public_key(ctx: typer.Context) -> None:
    """Print this deployment's audit-export public key and its fingerprint."""
    from facesearch.deployment import Deployment
    from facesearch.security import audit

    dep = Deployment.open(state_of(ctx).settings())
    try:
        pub = audit.public_key_b64(dep.keys)
    finally:
        dep.close()
    typer.echo(f"{pub} fingerprint={audit.public_key_fingerprint(pub)}")


@audit_app.command("verify-export")
def verify_export(
    file: Annotated[Path, typer.Argument(help="an export written by `facesearch audit export`")],
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key", help="the deployment's public key or fingerprint, obtained separately"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check an export's signature and chain; exit 1 naming the first bad entry. Needs no
    data directory or key: an external auditor runs it on the file alone."""
    from facesearch.security import audit

    report = audit.verify_export(file, expected_public_key=public_key)
    if as_json:
        print_json(report.as_dict())
    elif report.ok:
        console.print(
            f"[green]export verified[/]: {report.entries} entries, scope "
            f"{report.scope}, signed by key {report.fingerprint}"
        )
        if public_key is None:
            console.print(
                "[yellow]note[/]: pass --public-key with the deployment's fingerprint "
                "to prove who signed it"
            )
    else:
        where = (
            f" at entry {report.first_bad_id} (line {report.first_bad_line})"
            if report.first_bad_line
            else ""
        )
        console_err.print(f"[bold red]export does not verify[/]{where}: {report.problem}")
    if not report.ok:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
