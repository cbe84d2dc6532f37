"""`facesearch serve`: the API service under uvicorn, on loopback unless told otherwise."""

from __future__ import annotations

import copy
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from facesearch.cli.common import console, console_err, state_of
from facesearch.errors import ConfigError
from facesearch.files import private_dirs


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


def running_as_root() -> str | None:
    """A warning when the service runs with the superuser's rights."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return (
            "running as root: a flaw in the service or a decoder would own the host; run it as "
            "a dedicated unprivileged user that owns only the data directory and the key file"
        )
    return None


def log_config(log_file: Path | None) -> dict[str, Any]:
    """uvicorn's logging configuration, plus `log_file` (created 0600) when it is set."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    if log_file is None:
        return config
    path = log_file.expanduser()
    private_dirs(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))
    config["formatters"]["file"] = {
        "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
    }
    config["handlers"]["file"] = {
        "class": "logging.FileHandler",
        "filename": str(path),
        "formatter": "file",
        "encoding": "utf-8",
    }
    for name in ("uvicorn", "uvicorn.access"):
        config["loggers"][name]["handlers"].append("file")
    config["loggers"]["facesearch"] = {"handlers": ["file"], "level": "INFO"}
    return config


def stop_cleanly_on_sigterm() -> Callable[[], None]:
    """uvicorn re-raises the SIGTERM it caught once it has stopped; under the default action
    the process would die there, before `serve` removes its CLI socket and closes the
    deployment. Ours turns it into a clean exit (status 0, as a stop asked for is); the
    function returned puts the previous handler back."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    before = signal.signal(signal.SIGTERM, stop)

    def restore() -> None:
        signal.signal(signal.SIGTERM, before)

    return restore


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8600).")] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="TLS certificate chain (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")
    ] = None,
) -> None:
    """Run the API service under uvicorn."""
    import uvicorn

    from facesearch.api.app import create_app
    from facesearch.api.http_limits import uvicorn_options
    from facesearch.deployment import Deployment
    from facesearch.security import accounts, lifecycle
    from facesearch.security.actor import system_actor

    settings = state_of(ctx).settings(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
    tls = bool(settings.tls_cert and settings.tls_key)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    warnings = check_bind(settings.host, debug=settings.debug, tls=tls)
    root = running_as_root()
    if root:
        warnings.append(root)
    for warning in warnings:
        console_err.print(f"[yellow]warning:[/] {warning}")
    dep = Deployment.open(settings)
    dep.background_compaction = True  # index segments merge off the request path
    dep.isolate_ingest = True  # ingest jobs analyse in a low-priority process, not in ours
    console.print("opening the vector index …")
    dep.warm()  # before the port opens: no search pays for loading it
    app = create_app(dep)
    local = None
    if settings.service_socket:
        from facesearch.api.local_socket import LocalSearchSocket

        local = LocalSearchSocket(dep)
        try:
            where = local.start()
        except ConfigError as exc:  # the API still serves; the CLI searches on its own
            console_err.print(f"[yellow]warning:[/] no CLI socket: {exc}")
            local = None
        else:
            console.print(f"CLI searches of this data directory answered on {where}")
    url = accounts.base_url(settings)
    console.print(f"facesearch API at [bold]{url}/api/v1[/] (OpenAPI: {url}/api/v1/openapi.json)")
    with dep.db.session() as s:
        swept = lifecycle.disable_inactive(s, system_actor(), settings.inactive_days)
    if swept:
        console.print(
            f"disabled {len(swept)} account(s) unused for {settings.inactive_days} days "
            "(audited as user.disabled_inactive)"
        )
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
    restore_sigterm = stop_cleanly_on_sigterm()
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            ssl_certfile=str(settings.tls_cert) if tls else None,
            ssl_keyfile=str(settings.tls_key) if tls else None,
            proxy_headers=False,  # X-Forwarded-* are honoured by the app, from trusted proxies
            server_header=False,
            log_level="info",
            access_log=True,
            log_config=log_config(settings.log_file),
            **uvicorn_options(settings),
        )
    finally:
        restore_sigterm()
        if local is not None:
            local.close()
        dep.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
