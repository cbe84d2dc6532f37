"""`facesearch admin ...`: bootstrap the first administrator, create organisations and invite
their first administrators, before there is anyone to use the web interface. The operator at the
command line is recorded in the audit log as `cli`."""

from __future__ import annotations

from typing import Annotated

import typer

from facesearch.cli.common import console, state_of
from facesearch.security.actor import system_actor

admin_app = typer.Typer(
    help="Accounts and organisations (bootstrap, invitations).", no_args_is_help=True
)


@admin_app.command("bootstrap")
def bootstrap(
    ctx: typer.Context,
    email: Annotated[
        str,
        typer.Option(
            prompt="Administrator's email address", help="The platform administrator's email."
        ),
    ],
    hours: Annotated[int, typer.Option(help="Hours until the link expires.")] = 24,
) -> None:
    """Create the first platform administrator's one-time enrolment link."""
    from facesearch.deployment import Deployment
    from facesearch.security import accounts

    settings = state_of(ctx).settings()
    dep = Deployment.open(settings)
    try:
        with dep.db.session() as s:
            new = accounts.bootstrap(s, email, hours=hours)
            expires = new.row.expires_at
            token = new.token
        link = accounts.enrolment_link(settings, token)
        console.print(
            f"One-time enrolment link for {email} (expires {expires:%Y-%m-%d %H:%M} UTC):"
        )
        console.print(link, soft_wrap=True, highlight=False)
        console.print(
            "Without the web interface, accept it over the API:\n"
            f"  curl -X POST {accounts.base_url(settings)}/api/v1/invitations/accept "
            "-H 'Content-Type: application/json' "
            f'-d \'{{"token": "{token}", "password": "<at least 12 characters>"}}\'\n'
            "then sign in (/api/v1/auth/signin) and enrol the second factor "
            "(/api/v1/auth/mfa/enrol, /api/v1/auth/mfa/verify).",
            soft_wrap=True,
            highlight=False,
        )
        console.print("[yellow]The link works once. Send it over a channel you trust.[/]")
    finally:
        dep.close()


@admin_app.command("sweep")
def sweep(ctx: typer.Context) -> None:
    """Disable accounts unused for `inactive_days` (also run when `serve` starts); audited."""
    from facesearch.deployment import Deployment
    from facesearch.security import lifecycle

    settings = state_of(ctx).settings()
    dep = Deployment.open(settings)
    try:
        with dep.db.session() as s:
            ids = lifecycle.disable_inactive(s, system_actor(), settings.inactive_days)
        if settings.inactive_days <= 0:
            console.print("inactive_days is 0: no account is disabled for being unused")
        else:
            console.print(
                f"disabled {len(ids)} account(s) unused for {settings.inactive_days} days"
                + (f": ids {', '.join(map(str, ids))}" if ids else "")
            )
    finally:
        dep.close()


@admin_app.command("unlock")
def unlock(
    ctx: typer.Context,
    email: Annotated[str, typer.Option("--email", help="The locked account's email.")],
) -> None:
    """Clear an account's lockout and failure counts (audited as `user.unlocked`)."""
    from facesearch.deployment import Deployment
    from facesearch.security import lifecycle

    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            user = lifecycle.unlock_by_email(s, system_actor(), email)
            console.print(f"[green]unlocked[/] account {user.id}")
    finally:
        dep.close()


@admin_app.command("create-org")
def create_org(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Organisation name.")],
) -> None:
    """Create an organisation (tenant)."""
    from facesearch.deployment import Deployment
    from facesearch.security import admin

    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            org = admin.create_organisation(s, system_actor(), name)
            console.print(f"[green]created[/] organisation {org.name!r} (id {org.id})")
    finally:
        dep.close()


@admin_app.command("invite")
def invite(
    ctx: typer.Context,
    org: Annotated[str, typer.Option("--org", help="Organisation name.")],
    email: Annotated[str, typer.Option("--email", help="Invitee's email.")],
    role: Annotated[list[str], typer.Option("--role", help="Role (repeatable).")],
    hours: Annotated[int, typer.Option(help="Hours until the link expires.")] = 72,
) -> None:
    """Invite someone (typically the first organisation administrator) into an organisation."""
    from facesearch.deployment import Deployment
    from facesearch.security import accounts, tenancy

    settings = state_of(ctx).settings()
    dep = Deployment.open(settings)
    try:
        with dep.db.session() as s:
            organisation = tenancy.org_by_name(s, org)
            new = accounts.create_invitation(
                s, system_actor(), org_id=organisation.id, email=email, roles=role, hours=hours
            )
            s.commit()
            expires = new.row.expires_at
            token = new.token
        console.print(
            f"One-time invitation for {email} into {org!r} as {', '.join(role)} "
            f"(expires {expires:%Y-%m-%d %H:%M} UTC):"
        )
        console.print(accounts.enrolment_link(settings, token), soft_wrap=True, highlight=False)
    finally:
        dep.close()


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
