"""Issue 11, Medium 5, 6 and 7: platform administration and tenant membership stay apart; nobody
changes their own roles; two confirmations from people the searcher invited (or who invited each
other) are marked not independent, with the chain in the audit log; accepting an invitation
answers the same whether or not the address already has an account."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from facesearch.api.deps import CSRF_HEADER
from facesearch.deployment import Deployment
from facesearch.security import totp
from tests.api.casework_world import LEGAL, gallery, probe_bytes, search
from tests.api.conftest import MakeUser, SignedIn, db_id
from tests.conftest import ingest

PASSWORD = "correct horse battery staple 42"


def _accept(app: FastAPI, token: str) -> tuple[int, dict[str, object]]:
    r = TestClient(app).post(
        "/api/v1/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    return r.status_code, r.json()


def _invite(inviter: SignedIn, email: str, roles: list[str], org_id: int | None = None) -> str:
    body: dict[str, object] = {"email": email, "roles": roles}
    if org_id is not None:
        body["org_id"] = org_id
    r = inviter.client.post("/api/v1/invitations", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def _enrolled(app: FastAPI, email: str) -> TestClient:
    """Sign in as a freshly accepted account and enrol its second factor through the API."""
    c = TestClient(app)
    r = c.post("/api/v1/auth/signin", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    secret = c.post("/api/v1/auth/mfa/enrol").json()["secret"]
    r = c.post("/api/v1/auth/mfa/verify", json={"code": totp.code_at(secret, totp.current_step())})
    assert r.status_code == 200, r.text
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    return c


def test_a_platform_administrator_cannot_enter_a_tenant(app: FastAPI, make_user: MakeUser) -> None:
    root = make_user(None, ["platform_admin"])
    tenant_admin = make_user("Acme", ["org_admin"])
    assert tenant_admin.org_id is not None
    # an organisation that has an administrator manages its own members
    r = root.client.post(
        "/api/v1/invitations",
        json={"email": root.email, "roles": ["org_admin"], "org_id": tenant_admin.oid},
    )
    assert r.status_code == 409, r.text
    r = root.client.post(
        "/api/v1/invitations",
        json={
            "email": "me-again@platform.test",
            "roles": ["org_admin"],
            "org_id": tenant_admin.oid,
        },
    )
    assert r.status_code == 409, r.text
    # a new organisation gets its first administrator by invitation; inviting its own address
    # attaches nothing to the platform account
    new_org = root.client.post("/api/v1/organisations", json={"name": "Newco"}).json()["id"]
    status, _ = _accept(app, _invite(root, root.email, ["org_admin"], new_org))
    assert status == 201
    me = root.client.get("/api/v1/me").json()
    assert me["org_id"] is None and me["roles"] == ["platform_admin"]
    assert root.client.get("/api/v1/collections").status_code in (403, 404)


def test_nobody_changes_their_own_roles(make_user: MakeUser) -> None:
    boss = make_user("Acme", ["org_admin"])
    other = make_user("Acme", ["org_admin"])
    for roles in (["org_admin", "investigator"], ["org_admin", "auditor"], ["investigator"]):
        r = boss.client.put(f"/api/v1/users/{boss.uid}/roles", json={"roles": roles})
        assert r.status_code == 403, (roles, r.text)
    assert boss.client.get("/api/v1/me").json()["roles"] == ["org_admin"]
    # another administrator may
    r = other.client.put(
        f"/api/v1/users/{boss.uid}/roles", json={"roles": ["org_admin", "investigator"]}
    )
    assert r.status_code == 200


def test_confirmations_by_people_the_searcher_invited_are_not_independent(
    deployment: Deployment, app: FastAPI, make_user: MakeUser, tmp_path: Path
) -> None:
    # an administrator who also searches (granted by another administrator)
    boss = make_user("Acme", ["org_admin", "investigator"])
    r = boss.client.post(
        "/api/v1/collections", json={"name": "mugshots", "legal_basis": LEGAL, "retention_days": 30}
    )
    ingest(deployment, db_id(deployment, "collection", r.json()["id"]), gallery(tmp_path / "g"))
    # ... invites two reviewers of its own
    puppets = []
    for n in (1, 2):
        email = f"puppet{n}@acme.test"
        assert _accept(app, _invite(boss, email, ["reviewer"]))[0] == 201
        puppets.append(_enrolled(app, email))
    status, body = search(boss.client, probe_bytes(), case="2024/99")
    assert status == 200, body
    result_id = body["faces"][0]["candidates"][0]["result_id"]
    for c in puppets:
        r = c.post(f"/api/v1/results/{result_id}/reviews", json={"decision": "confirm"})
        assert r.status_code == 200, r.text
    shown = puppets[0].get(f"/api/v1/results/{result_id}").json()
    assert shown["status"] == "confirmed" and shown["independent"] is False, shown
    auditor = make_user("Acme", ["auditor"])
    entries = auditor.client.get(
        "/api/v1/audit/entries", params={"action": "review.decided", "limit": 100}
    ).json()["items"]
    last = entries[-1]["details"]
    assert last["independent"] is False
    assert any("invited by the searcher" in p for p in last["independence_problems"])
    assert {last["invited_by"][u] for u in last["confirmed_by"]} == {boss.uid}

    # two reviewers the searcher did not invite: an independent confirmation
    r1, r2 = make_user("Acme", ["reviewer"]), make_user("Acme", ["reviewer"])
    other = body["faces"][0]["candidates"][1]["result_id"]
    for reviewer in (r1, r2):
        r = reviewer.client.post(f"/api/v1/results/{other}/reviews", json={"decision": "confirm"})
        assert r.status_code == 200, r.text
    assert r1.client.get(f"/api/v1/results/{other}").json()["independent"] is True


def test_accepting_an_invitation_answers_the_same_for_an_existing_address(
    app: FastAPI, make_user: MakeUser
) -> None:
    victim = make_user("Org B", ["investigator"])
    prober = make_user("Org A", ["org_admin"])
    known = _accept(app, _invite(prober, victim.email, ["investigator"]))
    fresh = _accept(app, _invite(prober, "nobody-yet@a.test", ["investigator"]))
    assert known[0] == fresh[0] == 201
    assert set(known[1]) == set(fresh[1])
    assert {k: v for k, v in known[1].items() if k != "email"} == {
        k: v for k, v in fresh[1].items() if k != "email"
    }
    # nothing happened to the existing account, and it joined nothing
    assert victim.client.get("/api/v1/me").json()["org_id"] == victim.oid
    emails = [u["email"] for u in prober.client.get("/api/v1/users").json()]
    assert victim.email not in emails
