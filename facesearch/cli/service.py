"""`facesearch serve` and the `facesearch admin` commands that bootstrap accounts before there
is anyone to use the web interface."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from facesearch.cli.common import console, console_err, state_of
from facesearch.errors import ConfigError, FacesearchError

admin_app = typer.Typer(help="Accounts and organisations (bootstrap, invitations).",
                        no_args_is_help=True)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, debug: bool, tls: bool) -> list[str]:
    """Refuse risky combinations (ConfigError); returns warnings for the merely unwise."""
    public = not is_loopback(host)
    if debug and public:
        raise ConfigError(
            f"refusing to serve in debug mode on the non-loopback address {host}: debug output "
            "must never reach a network. Unset FACESEARCH_DEBUG or bind 127.0.0.1."
        )
    warnings = []
    if public and not tls:
        warnings.append(
            f"serving plain HTTP on {host}: put a TLS-terminating proxy in front (and list it "
            "in trusted_proxies) or pass --tls-cert and --tls-key"
        )
    if debug:
        warnings.append("debug mode is on: never use it in production")
    return warnings


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8600).")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="TLS certificate chain "
                                                  "(PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")]
    = None,
) -> None:
    """Run the API service under uvicorn."""
    import uvicorn

    from facesearch.api.app import create_app
    from facesearch.deployment import Deployment
    from facesearch.security import accounts

    settings = state_of(ctx).settings(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
    tls = bool(settings.tls_cert and settings.tls_key)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    for warning in check_bind(settings.host, debug=settings.debug, tls=tls):
        console_err.print(f"[yellow]warning:[/] {warning}")
    dep = Deployment.open(settings)
    app = create_app(dep)
    url = accounts.base_url(settings)
    console.print(f"facesearch API at [bold]{url}/api/v1[/] (OpenAPI: {url}/api/v1/openapi.json)")
    with dep.db.session() as s:
        admins = accounts.platform_admin_count(s)
    if admins == 0:
        console.print(
            "No administrator has enrolled yet. Use the one-time enrolment link from "
            "`admin bootstrap` (for a new link, which revokes the old one, run\n"
            f"  facesearch --home {settings.home} admin bootstrap --email you@example.org\n"
            "in another terminal): set a password, sign in, and enrol the second factor "
            "(TOTP) with the QR code."
        )
    try:
        uvicorn.run(
            app, host=settings.host, port=settings.port,
            ssl_certfile=str(settings.tls_cert) if tls else None,
            ssl_keyfile=str(settings.tls_key) if tls else None,
            proxy_headers=False,  # X-Forwarded-* are honoured by the app, from trusted proxies
            server_header=False, log_level="info", access_log=True,
        )
    finally:
        dep.close()


@admin_app.command("bootstrap")
def bootstrap(
    ctx: typer.Context,
    email: Annotated[str, typer.Option(prompt="Administrator's email address",
                                       help="The platform administrator's email.")],
    hours: Annotated[int, typer.Option(help="Hours until the link expires.")] = 24,
) -> None:
    """Create the first platform administrator's one-time enrolment link."""
    from facesearch.deployment import Deployment
    from facesearch.security import accounts

    settings = state_of(ctx).settings()
    dep = Deployment.open(settings)
    try:
        with dep.db.session() as s:
            try:
                new = accounts.bootstrap(s, email, hours=hours)
            except accounts.AccountError as exc:
                raise FacesearchError(str(exc)) from None
            expires = new.row.expires_at
            token = new.token
        link = accounts.enrolment_link(settings, token)
        console.print(f"One-time enrolment link for {email} (expires {expires:%Y-%m-%d %H:%M} "
                      "UTC):")
        console.print(link, soft_wrap=True, highlight=False)
        console.print(
            "Without the web interface, accept it over the API:\n"
            f"  curl -X POST {accounts.base_url(settings)}/api/v1/invitations/accept "
            "-H 'Content-Type: application/json' "
            f"-d '{{\"token\": \"{token}\", \"password\": \"<at least 12 characters>\"}}'\n"
            "then sign in (/api/v1/auth/signin) and enrol the second factor "
            "(/api/v1/auth/mfa/enrol, /api/v1/auth/mfa/verify).",
            soft_wrap=True, highlight=False,
        )
        console.print("[yellow]The link works once. Send it over a channel you trust.[/]")
    finally:
        dep.close()


@admin_app.command("create-org")
def create_org(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Organisation name.")],
) -> None:
    """Create an organisation (tenant)."""
    from facesearch.deployment import Deployment
    from facesearch.security import accounts

    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            try:
                org = accounts.create_organisation(s, name, actor_user_id=None, ip="cli")
            except accounts.AccountError as exc:
                raise FacesearchError(str(exc)) from None
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
            try:
                new = accounts.create_invitation(
                    s, org_id=organisation.id, email=email, roles=role, created_by=None,
                    hours=hours, ip="cli")
            except accounts.AccountError as exc:
                raise FacesearchError(str(exc)) from None
            expires = new.row.expires_at
            token = new.token
        console.print(f"One-time invitation for {email} into {org!r} as {', '.join(role)} "
                      f"(expires {expires:%Y-%m-%d %H:%M} UTC):")
        console.print(accounts.enrolment_link(settings, token), soft_wrap=True,
                      highlight=False)
    finally:
        dep.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(admin_app, name="admin")
