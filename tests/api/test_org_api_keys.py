"""An organisation administrator oversees its users' API keys: lists them (never a secret),
revokes one with a reason (audited, the owner told); another organisation's keys answer the same
404 as keys that do not exist; platform administrators and other roles get nothing."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select

from facesearch.deployment import Deployment
from facesearch.store.audit import AuditEntry
from tests.api.conftest import MakeUser, api_id, db_id, key_client

REASON = "laptop reported stolen on 2 December"


def test_an_org_admin_lists_and_revokes_its_users_keys(
    app: FastAPI, deployment: Deployment, make_user: MakeUser
) -> None:
    boss = make_user("Acme", ["org_admin"])
    worker = make_user("Acme", ["investigator"], email="wim@acme.test")
    secret = worker.api_key(["search"], name="nightly script")
    worker.api_key(["search"], name="spare")
    other = make_user("Globex", ["investigator"])
    other.api_key(["search"], name="globex script")

    listed = boss.client.get("/api/v1/api-keys")
    assert listed.status_code == 200, listed.text
    keys = listed.json()
    assert {k["name"] for k in keys} == {"nightly script", "spare"}  # nothing of Globex
    script = next(k for k in keys if k["name"] == "nightly script")
    assert script["owner_id"] == worker.uid and script["owner_email"] == "wim@acme.test"
    assert script["scopes"] == ["search"] and script["active"] is True
    assert script["expires_at"] and script["created_at"] and script["last_used_at"] is None
    assert secret not in listed.text and secret.split("_")[2] not in listed.text
    assert not {"key", "secret", "secret_hash"} & set(script)

    program = key_client(app, secret)
    assert program.get("/api/v1/me").status_code == 200
    assert boss.client.get("/api/v1/api-keys").json()[-1]["last_used_at"] is not None

    # a reason is required
    path = f"/api/v1/api-keys/{script['id']}/revoke"
    assert boss.client.post(path, json={"reason": ""}).status_code == 422
    assert boss.client.post(path, json={}).status_code == 422
    r = boss.client.post(path, json={"reason": REASON})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["revoked_at"]
    assert program.get("/api/v1/me").status_code == 401  # the key stops working at once
    assert boss.client.post(path, json={"reason": REASON}).status_code == 409
    with deployment.db.session() as s:
        (entry,) = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "apikey.revoked", AuditEntry.actor_user_id == boss.user_id
            )
        ).all()
    assert entry.org_id == boss.org_id
    assert entry.target_id == str(db_id(deployment, "api_key", script["id"]))
    assert entry.details is not None
    assert entry.details["reason"] == REASON and entry.details["by_administrator"] is True
    assert entry.details["owner_user_id"] == worker.user_id
    # the auditor reads the same record with opaque ids only
    auditor = make_user("Acme", ["auditor"])
    shown = auditor.client.get("/api/v1/audit/entries", params={"action": "apikey.revoked"})
    (seen,) = [e for e in shown.json()["items"] if e["details"].get("by_administrator")]
    assert seen["details"]["owner_user_id"] == worker.uid and seen["target_id"] == script["id"]
    notices = worker.client.get("/api/v1/me/notices").json()
    revoked = [n for n in notices if n["kind"] == "apikey.revoked"]
    assert revoked and REASON in revoked[0]["message"]
    # the owner sees it revoked among its own keys
    mine = {k["name"]: k for k in worker.client.get("/api/v1/me/api-keys").json()}
    assert mine["nightly script"]["active"] is False and mine["spare"]["active"] is True


def test_other_organisations_keys_do_not_exist_here(
    app: FastAPI, deployment: Deployment, make_user: MakeUser
) -> None:
    a_worker = make_user("Org A", ["investigator"])
    a_secret = a_worker.api_key(["search"], name="a script")
    (a_key,) = a_worker.client.get("/api/v1/me/api-keys").json()
    b_admin = make_user("Org B", ["org_admin"])
    b_admin_key = key_client(app, b_admin.api_key(["admin"], name="b admin"))
    missing = api_id(deployment, "api_key", 999_999)
    for client in (b_admin.client, b_admin_key):
        theirs = client.post(f"/api/v1/api-keys/{a_key['id']}/revoke", json={"reason": REASON})
        unknown = client.post(f"/api/v1/api-keys/{missing}/revoke", json={"reason": REASON})
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json() == unknown.json()
        assert a_key["id"] not in client.get("/api/v1/api-keys").text
    assert key_client(app, a_secret).get("/api/v1/me").status_code == 200  # untouched

    # no other role, and no platform administrator, oversees keys
    root = make_user(None, ["platform_admin"])
    assert root.client.get("/api/v1/api-keys").status_code == 403
    path = f"/api/v1/api-keys/{a_key['id']}/revoke"
    assert root.client.post(path, json={"reason": REASON}).status_code == 403
    a_auditor = make_user("Org A", ["auditor"])
    assert a_auditor.client.get("/api/v1/api-keys").status_code == 403
    assert a_worker.client.post(path, json={"reason": REASON}).status_code == 403
    assert key_client(app, a_secret).get("/api/v1/me").status_code == 200
