"""Issue 11, Low: "global sequential ids reveal other tenants' volumes (use opaque ids in the
API)". Every id the API shows is an opaque string that reveals neither order nor count, and
every id it is given that does not decode — malformed, tampered, of another kind, of another
deployment — answers exactly like an unknown id of the right kind (docs/decisions/0011)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from facesearch.api.ids import KINDS, pattern
from facesearch.deployment import Deployment
from tests.api.casework_world import LEGAL
from tests.api.conftest import MakeUser, api_id, db_id, new_deployment

ID_KEY = re.compile(r"^(id|.+_id|.+_ids|created_by)$")
OPAQUE = re.compile(r"^[a-z]+_[a-z2-7]{26}$")


def _collection(client: TestClient, name: str) -> str:
    r = client.post(
        "/api/v1/collections", json={"name": name, "legal_basis": LEGAL, "retention_days": 30}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _one_char_changes(opaque: str) -> list[str]:
    """The id with one character of its body changed, at every position."""
    prefix, body = opaque.split("_", 1)
    out = []
    for i, ch in enumerate(body):
        new = "a" if ch != "a" else "b"
        out.append(f"{prefix}_{body[:i]}{new}{body[i + 1 :]}")
    return out


def test_ids_made_one_after_the_other_show_no_order_and_no_count(
    deployment: Deployment, make_user: MakeUser, tmp_path: Path
) -> None:
    admin = make_user("Org A", ["org_admin"])
    made = [_collection(admin.client, f"c{n}") for n in range(12)]
    internal = [db_id(deployment, "collection", c) for c in made]
    assert internal == sorted(internal) and len(set(internal)) == 12  # sequential inside
    assert all(re.fullmatch(pattern("collection"), c) for c in made)
    # outside: sorted strings are not creation order, consecutive ids share no prefix
    assert sorted(made) != made
    for before, after in itertools.pairwise(made):
        assert before[4:8] != after[4:8], (before, after)
    # the listing shows the same ids
    listed = [c["id"] for c in admin.client.get("/api/v1/collections").json()["items"]]
    assert sorted(listed) == sorted(made)
    # another deployment gives the same database id another id
    other = new_deployment(tmp_path / "other")
    try:
        assert api_id(other, "collection", internal[0]) != made[0]
    finally:
        other.close()


def test_a_tampered_id_answers_exactly_like_an_unknown_one(
    deployment: Deployment, make_user: MakeUser
) -> None:
    admin = make_user("Org A", ["org_admin"])
    worker = make_user("Org A", ["investigator"])
    cid = _collection(admin.client, "mine")
    for route, real, kind in (
        ("/api/v1/collections/{}", cid, "collection"),
        ("/api/v1/users/{}", worker.uid, "user"),
    ):
        assert admin.client.get(route.format(real)).status_code == 200
        unknown = admin.client.get(route.format(api_id(deployment, kind, 999_999)))
        assert unknown.status_code == 404
        for bent in _one_char_changes(real):
            reply = admin.client.get(route.format(bent))
            assert (reply.status_code, reply.json()) == (404, unknown.json()), bent
        # and junk of every shape
        for junk in ("1", "0", "-1", "99999999999999999999", real.upper(), real + "a", "%00"):
            reply = admin.client.get(route.format(junk))
            assert (reply.status_code, reply.json()) == (404, unknown.json()), junk


def test_an_id_of_another_kind_is_an_unknown_id(
    deployment: Deployment, make_user: MakeUser
) -> None:
    admin = make_user("Org A", ["org_admin"])
    cid = _collection(admin.client, "mine")
    unknown = admin.client.get(f"/api/v1/users/{api_id(deployment, 'user', 999_999)}")
    same_number = api_id(deployment, "user", db_id(deployment, "collection", cid))
    assert admin.client.get(f"/api/v1/users/{same_number}").status_code in (200, 404)
    body = cid.removeprefix("col_")
    for wrong in (cid, f"user_{body}"):  # as given, and with the prefix of the asked kind
        reply = admin.client.get(f"/api/v1/users/{wrong}")
        assert (reply.status_code, reply.json()) == (404, unknown.json()), wrong
    # in a request body too: an organisation id that is a user id
    root = make_user(None, ["platform_admin"])
    org = root.client.post("/api/v1/organisations", json={"name": "NewCo"}).json()
    good = {"email": "boss@newco.test", "roles": ["org_admin"], "org_id": org["id"]}
    assert root.client.post("/api/v1/invitations", json=good).status_code == 201
    answers = set()
    for bad in (
        admin.uid,
        "org_" + admin.uid.removeprefix("user_"),
        db_id(deployment, "organisation", org["id"]),  # the bare integer
        api_id(deployment, "organisation", 999_999),
    ):
        reply = root.client.post(
            "/api/v1/invitations", json={**good, "email": "x@newco.test", "org_id": bad}
        )
        answers.add((reply.status_code, reply.text))
    assert len(answers) == 1 and next(iter(answers))[0] == 404, answers


def _ids_in(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(where, value) of every id-named field of a JSON value."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if ID_KEY.match(key) and key not in ("model_id", "target_id", "request_id"):
                found.append((where, item))
            found += _ids_in(item, where)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found += _ids_in(item, f"{path}[{n}]")
    return found


def test_no_response_carries_an_integer_id(
    deployment: Deployment, app: FastAPI, make_user: MakeUser
) -> None:
    admin = make_user("Org A", ["org_admin", "auditor", "investigator"])
    _collection(admin.client, "mine")
    admin.client.post("/api/v1/share-codes")
    invited = admin.client.post(
        "/api/v1/invitations", json={"email": "n@a.test", "roles": ["reviewer"]}
    )
    assert invited.status_code == 201
    admin.api_key(["audit"])
    checked = 0
    for path in (
        "/api/v1/me",
        "/api/v1/me/sessions",
        "/api/v1/me/api-keys",
        "/api/v1/me/notices",
        "/api/v1/users",
        "/api/v1/invitations",
        "/api/v1/collections",
        "/api/v1/shares/incoming",
        "/api/v1/jobs",
        "/api/v1/cases",
        "/api/v1/audit/entries?limit=1000",
    ):
        reply = admin.client.get(path)
        assert reply.status_code == 200, (path, reply.text)
        for where, value in _ids_in(reply.json()):
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v is None:
                    continue
                assert isinstance(v, str) and OPAQUE.match(v), (path, where, v)
                checked += 1
    assert checked >= 20
    # audit entries name their targets by opaque id too, and paging takes the opaque id
    entries = admin.client.get("/api/v1/audit/entries", params={"limit": 1000}).json()["items"]
    targets = [e["target_id"] for e in entries if e["target_type"] in ("collection", "user")]
    assert targets and all(OPAQUE.match(t) for t in targets)
    page = admin.client.get(
        "/api/v1/audit/entries", params={"after_id": entries[0]["id"], "limit": 1000}
    ).json()["items"]
    assert [e["id"] for e in page] == [e["id"] for e in entries[1:]]
    junk = admin.client.get("/api/v1/audit/entries", params={"after_id": "audit_nope"})
    assert junk.status_code == 422


def test_openapi_declares_every_id_as_a_string_with_its_pattern(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    params = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for p in op.get("parameters", []):
                if p["name"].endswith("_id"):
                    schema = p["schema"]
                    schema = next((s for s in schema.get("anyOf", [schema]) if "type" in s), {})
                    assert schema.get("type") == "string", (method, path, p)
                    prefix = schema["pattern"].split("_")[0].lstrip("^")
                    assert prefix in KINDS.values(), (method, path, schema)
                    params += 1
    assert params >= 25

    def integer_ids(schema: dict[str, Any]) -> list[str]:
        bad = []
        for name, prop in schema.get("properties", {}).items():
            if not ID_KEY.match(name) or name in ("model_id", "probe_face"):
                continue
            options = prop.get("anyOf", [prop])
            types = {o.get("type") for o in options} | {
                o.get("items", {}).get("type") for o in options if o.get("type") == "array"
            }
            if "integer" in types:
                bad.append(name)
        return bad

    schemas = doc["components"]["schemas"]
    bad = {name: integer_ids(s) for name, s in schemas.items() if integer_ids(s)}
    assert not bad, bad
