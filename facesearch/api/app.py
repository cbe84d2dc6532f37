"""The FastAPI application of one deployment.

Layers, outermost first: request guard (request id, trusted-proxy address, size limit, security
headers on every response, a generic 500 with the request id for any unhandled error: no stack
trace or internal path ever leaves the process), optional CORS (explicit origins only), then the
routers. Every route depends on `deps.guard` (deny by default)."""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
from collections.abc import MutableMapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facesearch import web
from facesearch.api import ids
from facesearch.api.deps import guard
from facesearch.api.errors import install_handlers
from facesearch.api.routers import (
    account,
    audit,
    auth,
    cases,
    collections,
    faces,
    health,
    invitations,
    jobs,
    org_api_keys,
    organisations,
    reviews,
    searches,
    users,
)
from facesearch.crypto import IdCodec
from facesearch.deployment import Deployment
from facesearch.security.denials import DenialLog
from facesearch.security.ratelimit import RateLimiter, limits_for
from facesearch.security.throttle import DatabaseHits

log = logging.getLogger("facesearch.api")

API_PREFIX = "/api/v1"
#: Every router of the API, in the order OpenAPI lists them.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    auth.router,
    account.router,
    users.router,
    org_api_keys.router,
    invitations.router,
    organisations.router,
    collections.router,
    searches.router,
    cases.router,
    reviews.router,
    faces.router,
    jobs.router,
    audit.router,
)

#: One strict policy for the API and the web application (ADR 0012): everything from this origin,
#: no inline script or style, no plugins, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'; manifest-src 'self'; worker-src 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


def _networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.warning("ignoring trusted_proxies entry %r: not an address or network", entry)
    return out


def _in(addr: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in nets)


class RequestGuard:
    """Pure ASGI middleware (so it also wraps errors and streaming bodies)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        trusted_proxies: list[str],
        tls: bool,
        codec: IdCodec | None = None,
    ) -> None:
        self.app = app
        self.codec = codec
        self.max_body = max_body
        self.trusted = _networks(trusted_proxies)
        self.tls = tls

    def _client(self, scope: Scope) -> tuple[str | None, bool]:
        client = scope.get("client")
        peer = client[0] if client else None
        https = scope.get("scheme") == "https"
        if peer and self.trusted and _in(peer, self.trusted):
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in scope.get("headers", [])
            }
            forwarded = [
                h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()
            ]
            # walk from the right: the first address not belonging to a trusted proxy
            for hop in reversed(forwarded):
                peer = hop
                if not _in(hop, self.trusted):
                    break
            proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                https = proto == "https"
        return peer, https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        ip, https = self._client(scope)
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state.update(client_ip=ip, https=https, request_id=request_id)
        extra = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        if https or self.tls:
            extra.append(HSTS)
        started = False
        cut_off = False  # the guard answered 413 itself; the app's own reply is dropped

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if cut_off:
                return
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        async def respond(
            status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
        ) -> None:
            raw = json.dumps(body).encode()
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(raw)).encode()),
                        *(headers or []),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": raw})

        too_large = {"detail": f"request body over {self.max_body} bytes"}
        declared = None
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await respond(400, {"detail": "bad Content-Length"})
                    return
        if declared is not None and declared > self.max_body:
            await respond(413, too_large, [(b"connection", b"close")])
            return

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received, cut_off
            if cut_off:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # a streamed body went over the limit: answer now, and tell the app the
                    # client has gone so it stops reading
                    if not started:
                        await respond(413, too_large, [(b"connection", b"close")])
                    cut_off = True
                    return {"type": "http.disconnect"}
            return message

        try:
            if self.codec is None:
                await self.app(scope, receive_wrapper, send_wrapper)
            else:
                with ids.using(self.codec):  # the deployment's opaque ids (api/ids.py)
                    await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:
            if cut_off and type(exc).__name__ == "ClientDisconnect":
                return
            log.exception(
                "unhandled error (request id %s) on %s %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
            )
            if not started and not cut_off:
                await respond(500, {"detail": "internal error", "request_id": request_id})


def include_routers(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)


def create_app(dep: Deployment, *, limiter: RateLimiter | None = None) -> FastAPI:
    settings = dep.settings
    app = FastAPI(
        title="facesearch",
        version="1",
        summary="Accountable face search: every request needs an MFA-verified session or a "
        "scoped API key.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        debug=False,
        dependencies=[Depends(guard)],
        # no trailing-slash redirects: their Location copied the request's Host header
        redirect_slashes=False,
    )
    app.state.deployment = dep
    app.state.limiter = limiter or RateLimiter(
        limits=limits_for(settings), store=DatabaseHits(dep.db, dep.keys)
    )
    app.state.denials = DenialLog(dep.db)
    install_handlers(app)
    include_routers(app)
    web.mount(app)  # after the API: its paths win
    origins = [o for o in settings.cors_origins if o.strip() and o.strip() != "*"]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
        )
    app.add_middleware(
        RequestGuard,
        max_body=settings.max_request_bytes,
        trusted_proxies=list(settings.trusted_proxies),
        tls=bool(settings.tls_cert and settings.tls_key),
        codec=ids.codec_for(dep.keys),
    )
    return app
