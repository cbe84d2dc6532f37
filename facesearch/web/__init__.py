"""The web application: static files (a single-page application in plain ES modules, no build
step) and the SPA fallback, served from the API's origin (ADR 0011).

`mount(app)` adds GET routes only: `/` and every screen path (`/signin`, `/enrol`, `/account`,
…, and anything below them) answer `index.html`; `/static/...` answers the files under
`static/` (a fixed set of media types, never a directory listing, never a path outside the
folder); `/sw.js` and `/manifest.webmanifest` live at the root so that the service worker's scope
is the whole application. These routes are public (`public_routes`): they hold no data; the
API (`/api/v1`) remains the only source of it. This package knows nothing of the API.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from facesearch.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: The top-level paths of the application's screens (each also answers `/<screen>/<anything>`).
#: A screen module under static/screens/ is registered in static/app.js; add its path here too.
SCREENS: tuple[str, ...] = (
    "signin",
    "enrol",
    "reset",
    "account",
    "admin",
    "audit",
    "search",
    "results",
    "review",
    "cases",
    "collections",
    "ingest",
)

MEDIA_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
}

#: The shell may be cached by the browser but must be revalidated (an upgrade shows at once).
STATIC_CACHE = "no-cache"

HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "the application's page"}
}
FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "a static file"}
}


def static_file(relative: str) -> tuple[bytes, str]:
    """The bytes and media type of one file under static/; NotFound for anything else (a path
    that leaves the folder, a hidden file, an unknown type, a folder)."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p.startswith(".") or "\\" in p for p in parts):
        raise NotFound("no such file")
    path = (STATIC_DIR / Path(*parts)).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise NotFound("no such file")
    media = MEDIA_TYPES.get(path.suffix.lower())
    if media is None:
        raise NotFound("no such file")
    return path.read_bytes(), media


def _file_response(relative: str, **headers: str) -> Response:
    data, media = static_file(relative)
    return Response(data, media_type=media, headers={"Cache-Control": STATIC_CACHE, **headers})


def index() -> Response:
    """The application's one page (every screen path answers it)."""
    return _file_response("index.html")


def screen_below(rest: str) -> Response:
    return index()


def static(path: str) -> Response:
    return _file_response(path)


def service_worker() -> Response:
    return _file_response("sw.js", **{"Service-Worker-Allowed": "/"})


def manifest() -> Response:
    return _file_response("manifest.webmanifest")


#: (path, handler, documented answer) of every route `mount` adds, all GET. Each screen has its
#: own two paths (no catch-all: an unknown path, or a GET of an API path, answers as before).
ROUTES: tuple[tuple[str, Callable[..., Response], dict[int | str, dict[str, Any]]], ...] = (
    ("/", index, HTML),
    *((f"/{name}", index, HTML) for name in SCREENS),
    *((f"/{name}/{{rest:path}}", screen_below, HTML) for name in SCREENS),
    ("/static/{path:path}", static, FILE),
    ("/sw.js", service_worker, FILE),
    ("/manifest.webmanifest", manifest, FILE),
)


def public_routes() -> frozenset[tuple[str, str]]:
    return frozenset(("GET", path) for path, _, _ in ROUTES)


def mount(app: FastAPI) -> None:
    """Add the application's routes after the API's (the API's paths win)."""
    for path, handler, responses in ROUTES:
        app.add_api_route(
            path,
            handler,
            methods=["GET"],
            response_class=Response,
            responses=responses,
            include_in_schema=False,
        )
