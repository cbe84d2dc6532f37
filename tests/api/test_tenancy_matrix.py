"""The two-organisation matrix: every object id of organisation A requested with organisation B's
credentials (holding the right scope) answers 404, like a missing id; B's lists and counts never
include A's data; a collection A shares read-only with B is searchable by B, never modifiable.

Ids are opaque (docs/decisions/0011): beside A's id, each route is asked for an unknown id of the
right kind, A's id with one character changed, and an id of another kind; all four answer the
same 404 with the same body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from facesearch.deployment import Deployment
from facesearch.ingest.jobs import runner_for
from tests.api.casework_world import (
    Org,
    blank_png,
    gallery,
    make_org,
    probe_bytes,
    search,
)
from tests.api.conftest import MakeUser, api_id, db_id, key_client

#: a database id no row has: its opaque id is "an unknown id of the right kind"
MISSING = 999_999
#: the matrix's object names -> kinds of opaque ids (facesearch/api/ids.py)
KIND = {"api key": "api_key", "audit entry": "audit_entry"}


@dataclass
class AData:
    """A's objects, by the opaque ids the API gave out."""

    collection: str
    search: str
    case: str
    result: str
    face: str
    job: str
    user: str
    invitation: str
    api_key: str
    audit_entry: str


@dataclass
class World:
    a: Org
    b: Org
    ids: AData
    app: FastAPI


@pytest.fixture(scope="module")
def world(
    module_deployment: Deployment,
    module_app: FastAPI,
    module_make_user: MakeUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    images = gallery(tmp_path_factory.mktemp("gallery"))
    a = make_org(module_deployment, module_app, module_make_user, "Org A", images)
    b = make_org(module_deployment, module_app, module_make_user, "Org B", images)
    status, body = search(a.keys["search"], probe_bytes(), case="A-2024-1")
    assert status == 200, body
    cand = body["faces"][0]["candidates"][0]
    code = (
        a.keys["review1"]
        .post(f"/api/v1/results/{cand['result_id']}/reviews", json={"decision": "confirm"})
        .status_code
    )
    assert code == 200
    job = a.keys["ingest"].post(
        f"/api/v1/collections/{a.collection_id}/uploads",
        files=[("files", ("x.png", blank_png(), "image/png"))],
    )
    assert job.status_code == 202, job.text
    assert runner_for(module_deployment).wait_idle(60)
    inv = a.admin.client.post(
        "/api/v1/invitations", json={"email": "new-person@a.test", "roles": ["investigator"]}
    )
    assert inv.status_code == 201, inv.text
    keys = a.investigator.client.get("/api/v1/me/api-keys").json()
    entries = a.keys["audit"].get("/api/v1/audit/entries", params={"limit": 1}).json()
    ids = AData(
        collection=a.collection_id,
        search=body["search_id"],
        case=body["case_id"],
        result=cand["result_id"],
        face=cand["face_id"],
        job=job.json()["id"],
        user=a.investigator.uid,
        invitation=inv.json()["id"],
        api_key=keys[0]["id"],
        audit_entry=entries["items"][0]["id"],
    )
    # B does some work of its own
    status, _ = search(b.keys["search"], probe_bytes(), case="B-2024-1")
    assert status == 200
    return World(a, b, ids, module_app)


Call = Callable[[TestClient, str], Response]


def _matrix(w: World) -> list[tuple[str, str, TestClient, Call, str]]:
    b, i = w.b, w.ids
    admin = b.admin.client  # org administrator session (admin + ingest)
    form = {"case_number": "B-2024-1", "purpose": "Searching on behalf of case B-2024-1"}
    return [
        (
            "collection",
            "GET /collections/{id}",
            b.keys["search"],
            lambda c, x: c.get(f"/api/v1/collections/{x}"),
            i.collection,
        ),
        (
            "collection",
            "DELETE /collections/{id}",
            admin,
            lambda c, x: c.delete(f"/api/v1/collections/{x}"),
            i.collection,
        ),
        (
            "collection",
            "POST /collections/{id}/shares",
            admin,
            lambda c, x: c.post(f"/api/v1/collections/{x}/shares", json={"code": "fsc_not-a-code"}),
            i.collection,
        ),
        (
            "collection",
            "POST /collections/{id}/uploads",
            b.keys["ingest"],
            lambda c, x: c.post(
                f"/api/v1/collections/{x}/uploads",
                files=[("files", ("x.png", blank_png(), "image/png"))],
            ),
            i.collection,
        ),
        (
            "collection",
            "POST /collections/{id}/folder-jobs",
            admin,
            lambda c, x: c.post(f"/api/v1/collections/{x}/folder-jobs", json={"folder": "."}),
            i.collection,
        ),
        (
            "collection",
            "POST /searches collections=id",
            b.keys["search"],
            lambda c, x: c.post(
                "/api/v1/searches",
                data={**form, "collections": str(x)},
                files={"probe": ("p.png", blank_png(), "image/png")},
            ),
            i.collection,
        ),
        (
            "search",
            "GET /searches/{id}",
            b.keys["search"],
            lambda c, x: c.get(f"/api/v1/searches/{x}"),
            i.search,
        ),
        (
            "case",
            "GET /cases/{id} (investigator)",
            b.keys["search"],
            lambda c, x: c.get(f"/api/v1/cases/{x}"),
            i.case,
        ),
        (
            "case",
            "GET /cases/{id} (auditor)",
            b.keys["audit"],
            lambda c, x: c.get(f"/api/v1/cases/{x}"),
            i.case,
        ),
        (
            "result",
            "GET /results/{id}",
            b.keys["review1"],
            lambda c, x: c.get(f"/api/v1/results/{x}"),
            i.result,
        ),
        (
            "result",
            "POST /results/{id}/reviews",
            b.keys["review1"],
            lambda c, x: c.post(f"/api/v1/results/{x}/reviews", json={"decision": "reject"}),
            i.result,
        ),
        (
            "face",
            "GET /faces/{id}/crop",
            b.keys["search"],
            lambda c, x: c.get(f"/api/v1/faces/{x}/crop"),
            i.face,
        ),
        (
            "face",
            "GET /faces/{id}/crop (reviewer)",
            b.keys["review1"],
            lambda c, x: c.get(f"/api/v1/faces/{x}/crop"),
            i.face,
        ),
        (
            "face",
            "GET /faces/{id}",
            b.keys["search"],
            lambda c, x: c.get(f"/api/v1/faces/{x}"),
            i.face,
        ),
        ("job", "GET /jobs/{id}", b.keys["ingest"], lambda c, x: c.get(f"/api/v1/jobs/{x}"), i.job),
        ("user", "GET /users/{id}", admin, lambda c, x: c.get(f"/api/v1/users/{x}"), i.user),
        (
            "user",
            "PUT /users/{id}/roles",
            admin,
            lambda c, x: c.put(f"/api/v1/users/{x}/roles", json={"roles": ["auditor"]}),
            i.user,
        ),
        (
            "user",
            "POST /users/{id}/disable",
            admin,
            lambda c, x: c.post(f"/api/v1/users/{x}/disable"),
            i.user,
        ),
        (
            "invitation",
            "DELETE /invitations/{id}",
            admin,
            lambda c, x: c.delete(f"/api/v1/invitations/{x}"),
            i.invitation,
        ),
        (
            "api key",
            "DELETE /me/api-keys/{id}",
            admin,
            lambda c, x: c.delete(f"/api/v1/me/api-keys/{x}"),
            i.api_key,
        ),
        (
            "api key",
            "POST /api-keys/{id}/revoke",
            admin,
            lambda c, x: c.post(f"/api/v1/api-keys/{x}/revoke", json={"reason": "probing"}),
            i.api_key,
        ),
        (
            "audit entry",
            "GET /audit/entries/{id}",
            b.keys["audit"],
            lambda c, x: c.get(f"/api/v1/audit/entries/{x}"),
            i.audit_entry,
        ),
    ]


def tampered(opaque: str) -> str:
    """The id with its last character changed (still well-formed base32)."""
    return opaque[:-1] + ("q" if opaque[-1] != "q" else "r")


def other_kind(kind: str, w: World) -> str:
    """An id the API gave out, of a kind other than `kind`."""
    return w.ids.search if kind != "search" else w.ids.case


def test_every_object_of_a_is_404_for_b(world: World, module_deployment: Deployment) -> None:
    rows = []
    for kind, route, client, call, a_id in _matrix(world):
        theirs = call(client, a_id)
        missing = call(client, api_id(module_deployment, KIND.get(kind, kind), MISSING))
        bent = call(client, tampered(a_id))
        wrong = call(client, other_kind(kind, world))
        replies = (theirs, missing, bent, wrong)
        same = all(r.json() == missing.json() for r in replies)
        rows.append((kind, route, *(r.status_code for r in replies), same))
    print("\ntenancy matrix (B's credentials on A's ids):")
    print(
        f"{'object':<12} {'request':<38} {'A id':>5} {'missing':>8} {'tampered':>9} "
        f"{'other kind':>11} {'same body':>10}"
    )
    for kind, route, got, miss, bent, wrong, same in rows:
        print(f"{kind:<12} {route:<38} {got:>5} {miss:>8} {bent:>9} {wrong:>11} {same!s:>10}")
    bad = [r for r in rows if r[2:6] != (404, 404, 404, 404) or not r[6]]
    assert not bad, bad
    # and nothing was changed: A's objects are intact
    a = world.a
    assert a.keys["search"].get(f"/api/v1/collections/{world.ids.collection}").status_code == 200
    assert a.admin.client.get(f"/api/v1/users/{world.ids.user}").json()["disabled"] is False
    assert a.keys["search"].get("/api/v1/cases").status_code == 200  # A's key still works
    result = a.keys["review1"].get(f"/api/v1/results/{world.ids.result}").json()
    assert [r["decision"] for r in result["reviews"]] == ["confirm"]


def test_lists_and_counts_of_b_exclude_a(world: World) -> None:
    a, b, ids = world.a, world.b, world.ids
    lists = {
        "/api/v1/collections": b.keys["search"],
        "/api/v1/cases": b.keys["search"],
        "/api/v1/audit/searches": b.keys["audit"],
        "/api/v1/audit/entries?limit=1000": b.keys["audit"],
        "/api/v1/jobs": b.keys["ingest"],
        "/api/v1/reviews/queue": b.keys["review1"],
        "/api/v1/users": b.admin.client,
        "/api/v1/invitations": b.admin.client,
        "/api/v1/me/api-keys": b.admin.client,
        "/api/v1/api-keys": b.admin.client,
    }
    a_cases = a.keys["search"].get("/api/v1/cases").json()
    b_cases = b.keys["search"].get("/api/v1/cases").json()
    assert b_cases["total"] == 1 and a_cases["total"] == 1
    assert [c["number"] for c in b_cases["items"]] == ["B-2024-1"]
    history = b.keys["audit"].get("/api/v1/audit/searches").json()
    assert history["total"] == 1 and ids.search not in [s["id"] for s in history["items"]]
    for path, client in lists.items():
        reply = client.get(path)
        assert reply.status_code == 200, (path, reply.text)
        body = reply.json()
        items = body["items"] if isinstance(body, dict) else body
        text = reply.text
        for item in items:
            assert item.get("org_id", b.admin.oid) == b.admin.oid, (path, item)
        if path.startswith("/api/v1/collections"):
            assert ids.collection not in [c["id"] for c in items]
        if path.startswith("/api/v1/audit/entries"):
            assert ids.audit_entry not in [e["id"] for e in items]
            assert all(e["org_id"] == b.admin.oid for e in items)
        if path.startswith("/api/v1/jobs"):
            assert ids.job not in [j["id"] for j in items]
        if path.startswith("/api/v1/users"):
            assert ids.user not in [u["id"] for u in items]
        if path.startswith("/api/v1/invitations"):
            assert ids.invitation not in [v["id"] for v in items]
        if path.startswith("/api/v1/api-keys"):
            assert ids.api_key not in [k["id"] for k in items] and items
            assert {k["owner_email"].split("@")[1] for k in items} == {"org-b.test"}
        if path.startswith("/api/v1/reviews"):
            assert ids.result not in [r["result_id"] for r in items]
        assert "Org A" not in text and "@org-a.test" not in text, path
    # counts per collection are B's own
    colls = b.keys["search"].get("/api/v1/collections").json()
    assert colls["total"] == 1


def test_shared_collection_is_searchable_but_read_only(world: World) -> None:
    a, b, ids = world.a, world.b, world.ids
    code = b.admin.client.post("/api/v1/share-codes").json()["code"]
    shared = a.admin.client.post(
        f"/api/v1/collections/{ids.collection}/shares", json={"code": code}
    )
    assert shared.status_code == 201, shared.text
    share_id = shared.json()["id"]
    assert b.admin.client.post(f"/api/v1/shares/{share_id}/accept").status_code == 200
    owned = a.admin.client.get(f"/api/v1/collections/{ids.collection}").json()
    assert owned["shared_with"] == ["Org B"]
    listed = {c["id"]: c for c in b.keys["search"].get("/api/v1/collections").json()["items"]}
    assert listed[ids.collection]["access"] == "read-only"
    assert listed[ids.collection]["owner"] == "Org A"
    status, body = search(
        b.keys["search"], probe_bytes(), case="B-2024-2", collections=str(ids.collection)
    )
    assert status == 200, body
    faces = [c["face_id"] for f in body["faces"] for c in f["candidates"]]
    assert faces and all(
        c["collection_id"] == ids.collection for f in body["faces"] for c in f["candidates"]
    )
    assert b.keys["search"].get(f"/api/v1/faces/{faces[0]}/crop").status_code == 200
    # read-only: B cannot delete, re-share, upload into or folder-ingest into it
    assert b.admin.client.delete(f"/api/v1/collections/{ids.collection}").status_code == 404
    assert (
        b.admin.client.post(
            f"/api/v1/collections/{ids.collection}/shares", json={"code": code}
        ).status_code
        == 404
    )
    assert (
        b.keys["ingest"]
        .post(
            f"/api/v1/collections/{ids.collection}/uploads",
            files=[("files", ("x.png", blank_png(), "image/png"))],
        )
        .status_code
        == 404
    )
    # A does not see B's search of A's collection
    a_history = a.keys["audit"].get("/api/v1/audit/searches").json()
    assert body["search_id"] not in [s["id"] for s in a_history["items"]]
    # unshared: gone again for B
    gone = a.admin.client.delete(f"/api/v1/collections/{ids.collection}/shares/{share_id}")
    assert gone.status_code == 200 and gone.json()["shared_with"] == []
    status, _ = search(b.keys["search"], blank_png(), collections=str(ids.collection))
    assert status == 404
    assert b.keys["search"].get(f"/api/v1/faces/{faces[0]}/crop").status_code == 404


def test_platform_admin_reads_no_tenant_data(world: World, module_make_user: MakeUser) -> None:
    root = module_make_user(None, ["platform_admin"])
    for path in (
        "/api/v1/collections",
        f"/api/v1/cases/{world.ids.case}",
        f"/api/v1/searches/{world.ids.search}",
        "/api/v1/audit/searches",
        f"/api/v1/faces/{world.ids.face}/crop",
        f"/api/v1/jobs/{world.ids.job}",
        "/api/v1/api-keys",
    ):
        assert root.client.get(path).status_code in (403, 404), path


def test_denied_attempts_and_sensitive_reads_are_audited(
    world: World, module_deployment: Deployment
) -> None:
    """Issue 11, Medium 9: B probing A's objects left no trace, and neither did reading a case
    or a face's provenance. Now each refusal is an `access.denied` entry (rate-limited per
    caller, in the caller's organisation) and each read is on the record."""
    from sqlalchemy import select

    from facesearch.store.audit import AuditEntry

    a, b, ids = world.a, world.b, world.ids

    def entries(action: str) -> list[AuditEntry]:
        with module_deployment.db.session() as s:
            query = select(AuditEntry).where(AuditEntry.action == action)
            return list(s.scalars(query.order_by(AuditEntry.id)))

    # a key of its own: the matrix spent the quota of B's usual search key
    probe = key_client(world.app, b.investigator.api_key(["search"], name="probe"))
    before = len(entries("access.denied"))
    assert probe.get(f"/api/v1/cases/{ids.case}").status_code == 404
    assert probe.get(f"/api/v1/faces/{ids.face}").status_code == 404
    assert b.keys["audit"].get("/api/v1/cases").status_code == 403  # wrong scope
    denied = entries("access.denied")[before:]
    assert [(e.details["status"], e.details["method"]) for e in denied] == [
        (404, "GET"),
        (404, "GET"),
        (403, "GET"),
    ]
    assert {e.org_id for e in denied} == {b.admin.org_id}
    assert denied[0].details["path"] == f"/api/v1/cases/{ids.case}"
    # a caller probing by the thousand gets at most its quota on the record
    for n in range(40):
        b.keys["review1"].get(f"/api/v1/results/{api_id(module_deployment, 'result', MISSING + n)}")
    probing = [e for e in entries("access.denied") if e.actor_key_id == _key_id(b.keys["review1"])]
    assert 1 <= len(probing) <= 20
    # reads of case detail, a search and a face's provenance are on A's record
    cases_before, faces_before = len(entries("case.viewed")), len(entries("face.provenance_viewed"))
    assert a.keys["search"].get(f"/api/v1/cases/{ids.case}").status_code == 200
    assert a.keys["search"].get(f"/api/v1/faces/{ids.face}").status_code == 200
    viewed = entries("case.viewed")[cases_before:]
    case_id = str(db_id(module_deployment, "case", ids.case))
    assert [(e.target_id, e.org_id) for e in viewed] == [(case_id, a.admin.org_id)]
    seen = entries("face.provenance_viewed")[faces_before:]
    assert [e.target_id for e in seen] == [str(db_id(module_deployment, "face", ids.face))]
    with module_deployment.db.session() as s:
        from facesearch.security import audit

        assert audit.verify_chain(s).ok


def _key_id(client: TestClient) -> int:
    from sqlalchemy import select

    from facesearch.store.accounts import ApiKey

    prefix = str(client.headers["Authorization"]).split("_")[1]
    app = client.app
    dep = app.state.deployment  # type: ignore[attr-defined]
    with dep.db.session() as s:
        return int(s.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)))
