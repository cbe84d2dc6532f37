"""The one mapping from facesearch's error vocabulary (`facesearch.errors`) to HTTP.

Routers and services never build HTTP errors themselves: they raise a `FacesearchError`, and the
handler installed here answers with the status of the nearest class in `STATUS`. Messages are
scrubbed of anything that looks like a filesystem path; a `ConfigError` is logged and answered
with a generic 500 carrying only the request id.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from facesearch.errors import (
    ConfigError,
    Conflict,
    FacesearchError,
    Forbidden,
    Gone,
    ImageRejected,
    InvalidRequest,
    Locked,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("facesearch.api")

#: Error class -> HTTP status. The first class in the exception's MRO found here wins.
STATUS: dict[type[FacesearchError], int] = {
    InvalidRequest: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    PayloadTooLarge: 413,
    Locked: 423,
    TooManyRequests: 429,
    ConfigError: 500,
    Unavailable: 503,
    FacesearchError: 400,
}

#: Anything that looks like a filesystem path; the API's own routes (/api/v1/...) are kept, so a
#: message can still say where to go next.
_PATHLIKE = re.compile(r"(?<![\w/])(?!/api/v\d+/)(?:[A-Za-z]:)?(?:[/\\][\w.\-~ ]+){2,}[/\\]?")


def scrub(message: str) -> str:
    """Remove anything that looks like a filesystem path from a message meant for a client."""
    return _PATHLIKE.sub("<path>", message)


def status_of(exc: FacesearchError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 400  # pragma: no cover - FacesearchError is in STATUS


def _request_id(request: Request) -> str | None:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else None


def error_response(request: Request, exc: FacesearchError) -> JSONResponse:
    status = status_of(exc)
    headers: dict[str, str] = {}
    body: dict[str, Any]
    if isinstance(exc, ConfigError):
        log.error("configuration error (request id %s): %s", _request_id(request), exc)
        return JSONResponse(
            {"detail": "service misconfigured", "request_id": _request_id(request)},
            status_code=500,
        )
    if isinstance(exc, ImageRejected):
        body = {"detail": scrub(str(exc)), "reason": exc.reason}
    elif isinstance(exc, InvalidRequest) and exc.field:
        body = {
            "detail": [
                {"loc": ["body", exc.field], "msg": scrub(exc.message), "type": "value_error"}
            ]
        }
    else:
        body = {"detail": scrub(str(exc))}
    if isinstance(exc, TooManyRequests | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _record_denial(request: Request, exc: FacesearchError, status: int) -> None:
    """An authenticated caller refused (403) or answered "not found" (404): on the record,
    rate-limited per caller (`security.denials`)."""
    principal = getattr(request.state, "principal", None)
    denials = getattr(request.app.state, "denials", None)
    if principal is None or denials is None:
        return
    try:
        await run_in_threadpool(
            denials.record,
            principal,
            status=status,
            method=request.method,
            path=request.url.path,
            reason=scrub(str(exc)),
        )
    except Exception:  # the refusal stands whatever happens to its record
        log.exception("denied request not audited (request id %s)", _request_id(request))


def install_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str | dict | list) else str(exc.detail)
        if isinstance(detail, str):
            detail = scrub(detail)
        return JSONResponse(
            {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": scrub(str(e.get("msg", ""))),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    async def facesearch_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FacesearchError)
        response = error_response(request, exc)
        if response.status_code in (403, 404):
            await _record_denial(request, exc, response.status_code)
        return response

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(FacesearchError, facesearch_error)
