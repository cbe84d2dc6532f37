"""One way to write an endpoint: every route declares what it answers.

A route answers either a declared response model (its JSON schema is in OpenAPI) or, for a file
download or an empty 204, a plain `Response` with the media type documented. Nothing returns an
undocumented dict."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.routing import APIRoute


def _api_routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute)]


def test_every_route_has_a_response_model_or_a_documented_media_type(app: FastAPI) -> None:
    undocumented = []
    for route in _api_routes(app):
        if route.response_model is not None:
            continue
        plain = isinstance(route.response_class, type) and issubclass(
            route.response_class, Response
        )
        documented = route.status_code == 204 or any(
            "content" in spec for spec in route.responses.values()
        )
        if plain and documented:
            continue
        undocumented.append(f"{sorted(route.methods)} {route.path}")
    assert not undocumented, "routes without a response model: " + ", ".join(undocumented)


def test_openapi_gives_a_schema_for_every_json_answer(app: FastAPI) -> None:
    spec: dict[str, Any] = app.openapi()
    missing = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            for status, answer in op.get("responses", {}).items():
                if not status.startswith("2") or status == "204":
                    continue
                json_body = answer.get("content", {}).get("application/json")
                if json_body is not None and not json_body.get("schema"):
                    missing.append(f"{method.upper()} {path} {status}")
    assert not missing, "JSON answers without a schema: " + ", ".join(missing)
