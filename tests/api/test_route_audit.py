"""Route audit: every route of the real app (including routers added later) refuses an
anonymous request (401), a password-only session whose second factor is not verified (401), and
an API key lacking the route's scope (403, or 404 where the route hides objects), except the
documented public routes. The table is printed and written to a file under the temp dir."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from facesearch.api.deps import CSRF_HEADER
from facesearch.api.public_routes import ANY_PRINCIPAL_ROUTES, PUBLIC_ROUTES
from facesearch.security.roles import ORG_ROLES, SCOPES
from tests.api.conftest import MakeUser, api_id, create_user, key_client

ANY_PRINCIPAL = ANY_PRINCIPAL_ROUTES
#: a database id no row has; routes are asked for its opaque id of the parameter's kind
DUMMY_ID = 999_999
#: path parameters -> kinds of opaque ids (facesearch/api/ids.py)
PARAM_KINDS = {
    "collection_id": "collection",
    "share_id": "share",
    "face_id": "face",
    "case_id": "case",
    "search_id": "search",
    "result_id": "result",
    "job_id": "job",
    "user_id": "user",
    "org_id": "organisation",
    "session_id": "session",
    "key_id": "api_key",
    "passkey_id": "passkey",
    "invitation_id": "invitation",
    "entry_id": "audit_entry",
}
REFUSED = {403, 404}
REPORT = Path(tempfile.gettempdir()) / "facesearch-route-audit.md"


def routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    for rc in iter_route_contexts(app.routes):
        path = str(rc.path)
        for method in sorted((rc.methods or set()) - {"HEAD"}):
            yield method, path, rc


def _walk(dependant: Any) -> Iterator[Any]:
    if dependant is None:
        return
    yield dependant
    for sub in getattr(dependant, "dependencies", []):
        yield from _walk(sub)


def declared_scope(rc: Any) -> str | None:
    """The scope the route asks for through `deps.require` ("session" for session-only), or
    None when it only asks for a principal (and checks scopes in its body, if at all)."""
    for dep in _walk(getattr(rc, "dependant", None)):
        marker = getattr(getattr(dep, "call", None), "__facesearch_scope__", None)
        if marker:
            return str(marker)
    return None


def concrete(dep: Any, path: str) -> str:
    """The route with each parameter a well-formed, unknown opaque id of its kind."""
    return re.sub(r"\{([^}]+)\}", lambda m: api_id(dep, PARAM_KINDS[m.group(1)], DUMMY_ID), path)


@dataclass
class Row:
    method: str
    path: str
    scope: str
    anonymous: str = "-"
    password_only: str = "-"
    wrong_scope: str = "-"
    allowed_scopes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def test_every_route_refuses_the_unauthorised(
    app: FastAPI,
    make_user: MakeUser,
    deployment: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    everything = make_user("Audit Org", list(ORG_ROLES))
    keys = {
        scope: key_client(app, everything.api_key([scope], name=f"only {scope}"))
        for scope in SCOPES
    }
    all_scopes = key_client(app, everything.api_key(list(SCOPES), name="all scopes"))
    _, _, email, password, _, _ = create_user(deployment, "Audit Org", list(ORG_ROLES))
    half = TestClient(app)
    reply = half.post("/api/v1/auth/signin", json={"email": email, "password": password})
    assert reply.status_code == 200 and reply.json()["mfa_required"]
    half.headers[CSRF_HEADER] = reply.json()["csrf_token"]
    anonymous = TestClient(app)

    listed = list(routes(app))
    known = {(m, p) for m, p, _ in listed}
    stale = sorted((PUBLIC_ROUTES | ANY_PRINCIPAL_ROUTES) - known)
    assert not stale, f"public_routes lists routes that do not exist: {stale}"

    rows: list[Row] = []
    for method, path, rc in listed:
        if (method, path) in PUBLIC_ROUTES:
            rows.append(Row(method, path, "public"))
            continue
        scope = declared_scope(rc)
        row = Row(method, path, scope or ("any" if (method, path) in ANY_PRINCIPAL else "?"))
        url = concrete(deployment, path)
        code = anonymous.request(method, url).status_code
        row.anonymous = str(code)
        if code != 401:
            row.problems.append(f"anonymous got {code}")
        code = half.request(method, url).status_code
        row.password_only = str(code)
        if code != 401:
            row.problems.append(f"password-only session got {code}")

        results = {s: keys[s].request(method, url).status_code for s in SCOPES}
        row.allowed_scopes = [s for s, c in results.items() if c not in (401, 403)]
        if scope == "session":
            wrong = results
        elif scope:
            wrong = {s: c for s, c in results.items() if s != scope}
        else:
            wrong = {s: c for s, c in results.items() if c in REFUSED}
            if (method, path) not in ANY_PRINCIPAL:
                if not wrong:
                    row.problems.append("no key scope is refused")
                elif all(c == 404 for c in wrong.values()):
                    control = all_scopes.request(method, url).status_code
                    if control == 404:  # a 404 for everyone proves nothing about scopes
                        row.problems.append("scope not checked before the lookup")
        bad = {s: c for s, c in wrong.items() if c not in REFUSED}
        if bad:
            row.problems.append(f"keys without the scope got {bad}")
        codes = sorted({str(c) for c in wrong.values()})
        row.wrong_scope = "/".join(codes) if codes else "n/a (any principal)"
        rows.append(row)

    header = (
        "| method | route | scope | anonymous | password-only | wrong-scope key |\n"
        "|---|---|---|---|---|---|\n"
    )
    table = header + "".join(
        f"| {r.method} | `{r.path}` | {r.scope} | {r.anonymous} | {r.password_only} | "
        f"{r.wrong_scope} |{' **' + '; '.join(r.problems) + '**' if r.problems else ''}\n"
        for r in rows
    )
    (tmp_path / "route-audit.md").write_text(table)
    REPORT.write_text(table)
    with capsys.disabled():
        print(f"\nroute audit ({len(rows)} routes; also in {REPORT}):\n{table}")
    failures = [f"{r.method} {r.path}: {'; '.join(r.problems)}" for r in rows if r.problems]
    assert not failures, "\n".join(failures)
    assert len([r for r in rows if r.scope != "public"]) >= 20
