"""Identity over the real app: invitations, sign-in, the second factor, lockout, rate limits,
sessions, CSRF, API keys, roles and tenancy of the identity routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from facesearch import clock
from facesearch.api.deps import CSRF_HEADER, SESSION_COOKIE
from facesearch.deployment import Deployment
from facesearch.errors import Conflict
from facesearch.security import accounts, admin, audit, totp
from facesearch.security.actor import system_actor
from facesearch.security.ratelimit import DEFAULT_LIMITS, Limit, RateLimiter
from facesearch.store.accounts import ApiKey, User, UserSession
from facesearch.store.audit import AuditEntry
from tests.api.conftest import MakeUser, key_client

GOOD_PASSWORD = "a sturdy passphrase 4 tests"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        clock.set_clock(lambda: self.now)

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()  # conftest restores the wall clock


def actions(dep: Deployment) -> list[str]:
    with dep.db.session() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def sign_in_password(app: FastAPI, email: str, password: str) -> tuple[TestClient, int]:
    c = TestClient(app)
    r = c.post("/api/v1/auth/signin", json={"email": email, "password": password})
    if r.status_code == 200:
        c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    return c, r.status_code


def invite_token(
    dep: Deployment, org: str | None, email: str, roles: list[str], hours: int = 24
) -> str:
    with dep.db.session() as s:
        if org is None:
            return accounts.bootstrap(s, email, hours=hours).token
        org_row = admin.create_organisation(s, system_actor(), org)
        return accounts.create_invitation(
            s, system_actor(), org_id=org_row.id, email=email, roles=roles, hours=hours
        ).token


# -- the whole journey ----------------------------------------------------------------------------
def test_bootstrap_enrol_and_recovery_codes(
    app: FastAPI, deployment: Deployment, client: TestClient, fake_clock: FakeClock
) -> None:
    token = invite_token(deployment, None, "root@example.org", ["platform_admin"])
    r = client.post("/api/v1/invitations/accept", json={"token": token, "password": "password1234"})
    assert r.status_code == 422 and "common" in r.json()["detail"]
    r = client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "password": GOOD_PASSWORD, "display_name": "Root"},
    )
    assert r.status_code == 201, r.text
    # single use
    r = client.post("/api/v1/invitations/accept", json={"token": token, "password": GOOD_PASSWORD})
    assert r.status_code == 410

    c, code = sign_in_password(app, "root@example.org", GOOD_PASSWORD)
    assert code == 200
    cookie = c.cookies.get(SESSION_COOKIE)
    assert cookie
    # before the second factor nothing but enrolment works
    assert c.get("/api/v1/me").status_code == 401
    assert c.get("/api/v1/organisations").status_code == 401
    assert c.post("/api/v1/organisations", json={"name": "X"}).status_code == 401
    assert c.post("/api/v1/auth/mfa/verify", json={"code": "123456"}).status_code == 409

    r = c.post("/api/v1/auth/mfa/enrol")
    assert r.status_code == 200
    body = r.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/") and "<svg" in body["qr_svg"]
    secret = body["secret"]
    r = c.post("/api/v1/auth/mfa/verify", json={"code": "000000"})
    assert r.status_code == 401
    r = c.post("/api/v1/auth/mfa/verify", json={"code": totp.code_at(secret, totp.current_step())})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    # the token was rotated: the pre-MFA cookie is worthless
    assert c.cookies.get(SESSION_COOKIE) != cookie
    stale = TestClient(app, cookies={SESSION_COOKIE: cookie})
    assert stale.get("/api/v1/me").status_code == 401
    me = c.get("/api/v1/me").json()
    assert me["roles"] == ["platform_admin"] and me["mfa_enrolled"] and me["org_id"] is None
    assert c.post("/api/v1/auth/mfa/enrol").status_code == 409  # no second enrolment

    # recovery code: single use
    fake_clock.advance(seconds=90)
    c2, _ = sign_in_password(app, "root@example.org", GOOD_PASSWORD)
    r = c2.post("/api/v1/auth/mfa/verify", json={"code": codes[0]})
    assert r.status_code == 200 and r.json()["used_recovery_code"]
    assert r.json()["recovery_codes"] is None and r.json()["recovery_codes_remaining"] == 9
    c3, _ = sign_in_password(app, "root@example.org", GOOD_PASSWORD)
    assert c3.post("/api/v1/auth/mfa/verify", json={"code": codes[0]}).status_code == 401
    assert c3.post("/api/v1/auth/mfa/verify", json={"code": codes[1]}).status_code == 200

    # bootstrap is refused once an administrator exists
    with deployment.db.session() as s, pytest.raises(Conflict):
        accounts.bootstrap(s, "second@example.org")

    log = actions(deployment)
    for action in (
        "invitation.created",
        "invitation.used",
        "user.created",
        "auth.signin.success",
        "mfa.enrolment_started",
        "mfa.failure",
        "mfa.enrolled",
        "mfa.recovery_code_used",
    ):
        assert action in log, action
    with deployment.db.session() as s:
        assert audit.verify_chain(s).ok


def test_totp_code_cannot_be_replayed(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])  # used this step's code
    c, _ = sign_in_password(app, user.email, user.password)
    with_same_code = c.post(
        "/api/v1/auth/mfa/verify",
        json={"code": totp.code_at(user.totp_secret, totp.current_step())},
    )
    # refused unless the fixture already had to use the next step
    with_next = c.post(
        "/api/v1/auth/mfa/verify",
        json={"code": totp.code_at(user.totp_secret, totp.current_step() + 1)},
    )
    assert with_same_code.status_code == 401 or with_next.status_code == 401


def test_invitation_expiry_and_revocation(
    app: FastAPI, deployment: Deployment, client: TestClient, fake_clock: FakeClock
) -> None:
    token = invite_token(deployment, "Acme", "late@acme.test", ["investigator"], hours=2)
    fake_clock.advance(hours=2, seconds=1)
    r = client.post("/api/v1/invitations/accept", json={"token": token, "password": GOOD_PASSWORD})
    assert r.status_code == 410
    r = client.post(
        "/api/v1/invitations/accept", json={"token": "x" * 43, "password": GOOD_PASSWORD}
    )
    assert r.status_code == 410


def test_org_admin_invites_into_own_org_only(
    app: FastAPI, make_user: MakeUser, client: TestClient
) -> None:
    admin_a = make_user("Org A", ["org_admin"])
    admin_b = make_user("Org B", ["org_admin"])
    r = admin_a.client.post(
        "/api/v1/invitations", json={"email": "new@a.test", "roles": ["investigator", "reviewer"]}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["org_id"] == admin_a.oid and "#token=" in created["link"]
    assert created["token"] not in created["link"].split("#")[0]
    # other organisation: 404, not 403
    assert admin_b.client.delete(f"/api/v1/invitations/{created['id']}").status_code == 404
    r = admin_a.client.post(
        "/api/v1/invitations",
        json={"email": "x@a.test", "roles": ["investigator"], "org_id": admin_b.oid},
    )
    assert r.status_code == 404
    r = admin_a.client.post(
        "/api/v1/invitations", json={"email": "x@a.test", "roles": ["platform_admin"]}
    )
    assert r.status_code == 422
    assert [i["id"] for i in admin_b.client.get("/api/v1/invitations").json()] == []
    # revoke, then the token is dead
    r = admin_a.client.delete(f"/api/v1/invitations/{created['id']}")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    r = client.post(
        "/api/v1/invitations/accept", json={"token": created["token"], "password": GOOD_PASSWORD}
    )
    assert r.status_code == 410
    # a fresh one works and binds org and roles
    r = admin_a.client.post(
        "/api/v1/invitations", json={"email": "new@a.test", "roles": ["investigator"]}
    )
    r = client.post(
        "/api/v1/invitations/accept", json={"token": r.json()["token"], "password": GOOD_PASSWORD}
    )
    assert r.status_code == 201
    users = admin_a.client.get("/api/v1/users").json()
    new = next(u for u in users if u["email"] == "new@a.test")
    assert new["roles"] == ["investigator"] and not new["mfa_enrolled"]
    assert all(u["email"] != admin_b.email for u in users)
    assert admin_b.client.get(f"/api/v1/users/{new['id']}").status_code == 404


def test_platform_admin_manages_orgs_and_invites_org_admins(make_user: MakeUser) -> None:
    root = make_user(None, ["platform_admin"])
    org_admin = make_user("Existing", ["org_admin"])
    r = root.client.post("/api/v1/organisations", json={"name": "Newco"})
    assert r.status_code == 201
    org_id = r.json()["id"]
    assert root.client.post("/api/v1/organisations", json={"name": "newco"}).status_code == 409
    names = [o["name"] for o in root.client.get("/api/v1/organisations").json()]
    assert names == ["Existing", "Newco"]
    r = root.client.post(
        "/api/v1/invitations",
        json={"email": "boss@newco.test", "roles": ["org_admin"], "org_id": org_id},
    )
    assert r.status_code == 201
    r = root.client.post(
        "/api/v1/invitations",
        json={"email": "i@newco.test", "roles": ["investigator"], "org_id": org_id},
    )
    assert r.status_code == 403
    # the client list is visible to nobody else
    assert org_admin.client.get("/api/v1/organisations").status_code == 403
    assert org_admin.client.get(f"/api/v1/organisations/{org_id}").status_code == 403
    # platform admins hold no tenant: the org-admin user routes are closed to them
    assert root.client.get("/api/v1/users").status_code == 403


def test_roles_change_and_disable(make_user: MakeUser) -> None:
    admin = make_user("Acme", ["org_admin"])
    worker = make_user("Acme", ["investigator"])
    key = worker.api_key(["search"])
    r = admin.client.put(f"/api/v1/users/{worker.uid}/roles", json={"roles": ["reviewer"]})
    assert r.status_code == 200 and r.json()["roles"] == ["reviewer"]
    # the key keeps only scopes the current roles grant
    me = key_client(admin.client.app, key).get("/api/v1/me").json()
    assert me["scopes"] == []
    r = admin.client.put(f"/api/v1/users/{admin.uid}/roles", json={"roles": ["reviewer"]})
    assert r.status_code == 403
    r = admin.client.put(f"/api/v1/users/{worker.uid}/roles", json={"roles": ["platform_admin"]})
    assert r.status_code == 422
    r = admin.client.post(f"/api/v1/users/{worker.uid}/disable")
    assert r.status_code == 200 and r.json()["disabled"]
    assert worker.client.get("/api/v1/me").status_code == 401
    assert key_client(admin.client.app, key).get("/api/v1/me").status_code == 401


# -- lockout and rate limits ----------------------------------------------------------------------
def test_lockout_after_five_failures_for_fifteen_minutes(
    app: FastAPI, make_user: MakeUser, deployment: Deployment, fake_clock: FakeClock
) -> None:
    user = make_user("Acme", ["investigator"])
    for _ in range(4):
        assert sign_in_password(app, user.email, "wrong password!!")[1] == 401
    r = TestClient(app).post(
        "/api/v1/auth/signin", json={"email": user.email, "password": "wrong password!!"}
    )
    assert r.status_code == 423 and "locked" in r.json()["detail"]
    # the existing session was ended, the right password is refused while locked
    assert user.client.get("/api/v1/me").status_code == 401
    assert sign_in_password(app, user.email, user.password)[1] == 423
    fake_clock.advance(minutes=14)
    assert sign_in_password(app, user.email, user.password)[1] == 423
    fake_clock.advance(minutes=1, seconds=1)
    assert sign_in_password(app, user.email, user.password)[1] == 200
    assert "auth.locked" in actions(deployment)
    assert actions(deployment).count("auth.signin.failure") >= 6


def test_unknown_email_is_indistinguishable(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    known = [
        TestClient(app).post(
            "/api/v1/auth/signin", json={"email": user.email, "password": "nope nope nope"}
        )
        for _ in range(6)
    ]
    unknown = [
        TestClient(app).post(
            "/api/v1/auth/signin", json={"email": "ghost@acme.test", "password": "nope nope"}
        )
        for _ in range(6)
    ]
    assert (
        [r.status_code for r in known]
        == [r.status_code for r in unknown]
        == [401, 401, 401, 401, 423, 423]
    )
    assert known[0].json() == unknown[0].json()


def test_mfa_failures_lock_too(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    c, _ = sign_in_password(app, user.email, user.password)
    codes = [
        c.post("/api/v1/auth/mfa/verify", json={"code": "000000"}).status_code for _ in range(5)
    ]
    assert codes == [401, 401, 401, 401, 423]
    assert sign_in_password(app, user.email, user.password)[1] == 423


def test_sign_in_rate_limits(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    limits = dict(DEFAULT_LIMITS)
    limits["signin:address"] = Limit(3, 60.0)
    app.state.limiter = RateLimiter(limits)
    c = TestClient(app)
    codes = [
        c.post(
            "/api/v1/auth/signin", json={"email": f"u{i}@x.test", "password": "whatever x"}
        ).status_code
        for i in range(3)
    ]
    assert codes == [401, 401, 401]
    r = c.post("/api/v1/auth/signin", json={"email": user.email, "password": user.password})
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    # another address is not affected
    other = TestClient(app, client=("10.9.9.9", 4000))
    assert (
        other.post(
            "/api/v1/auth/signin", json={"email": user.email, "password": user.password}
        ).status_code
        == 200
    )

    limits["signin:address"] = Limit(1000, 60.0)
    limits["signin:account"] = Limit(2, 60.0)
    app.state.limiter = RateLimiter(limits)
    codes = [
        TestClient(app, client=(f"10.0.0.{i}", 1))
        .post("/api/v1/auth/signin", json={"email": user.email, "password": user.password})
        .status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]


# -- sessions -------------------------------------------------------------------------------------
def test_session_idle_timeout(make_user: MakeUser, fake_clock: FakeClock) -> None:
    user = make_user("Acme", ["investigator"])
    fake_clock.advance(minutes=29)
    assert user.client.get("/api/v1/me").status_code == 200
    fake_clock.advance(minutes=29)
    assert user.client.get("/api/v1/me").status_code == 200
    fake_clock.advance(minutes=30, seconds=1)
    assert user.client.get("/api/v1/me").status_code == 401


def test_session_absolute_lifetime(make_user: MakeUser, fake_clock: FakeClock) -> None:
    user = make_user("Acme", ["investigator"])
    for _ in range(28):  # active every 25 minutes: 11 h 40 min
        fake_clock.advance(minutes=25)
        assert user.client.get("/api/v1/me").status_code == 200
    fake_clock.advance(minutes=25)  # 12 h 05 min after sign-in
    assert user.client.get("/api/v1/me").status_code == 401


def test_csrf_required_for_cookie_writes(make_user: MakeUser) -> None:
    user = make_user("Acme", ["org_admin"])
    csrf = user.client.headers.pop(CSRF_HEADER)
    body = {"email": "n@acme.test", "roles": ["investigator"]}
    assert user.client.get("/api/v1/users").status_code == 200  # reads need no token
    r = user.client.post("/api/v1/invitations", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = user.client.post("/api/v1/invitations", json=body, headers={CSRF_HEADER: "forged"})
    assert r.status_code == 403
    r = user.client.post("/api/v1/invitations", json=body, headers={CSRF_HEADER: csrf})
    assert r.status_code == 201
    assert user.client.post("/api/v1/auth/signout").status_code == 403
    # API keys carry no ambient authority and need no token
    key = user.client.post(
        "/api/v1/me/api-keys",
        headers={CSRF_HEADER: csrf},
        json={"name": "k", "scopes": ["admin"], "expires_in_days": 5},
    ).json()["key"]
    r = key_client(user.client.app, key).post(
        "/api/v1/invitations", json=body | {"email": "m@acme.test"}
    )
    assert r.status_code == 201


def test_sign_out_and_sign_out_everywhere(
    app: FastAPI, make_user: MakeUser, deployment: Deployment
) -> None:
    user = make_user("Acme", ["investigator"])
    other = user.sign_in_again()
    sessions_listed = user.client.get("/api/v1/me/sessions").json()
    assert len(sessions_listed) == 2 and sum(s["current"] for s in sessions_listed) == 1
    assert user.client.post("/api/v1/auth/signout").status_code == 204
    assert user.client.get("/api/v1/me").status_code == 401
    assert other.get("/api/v1/me").status_code == 200
    third = user.sign_in_again()
    assert other.post("/api/v1/auth/signout-all").status_code == 204
    assert other.get("/api/v1/me").status_code == 401
    assert third.get("/api/v1/me").status_code == 401
    log = actions(deployment)
    assert "session.signout" in log and "session.signout_all" in log


# -- API keys -------------------------------------------------------------------------------------
def test_api_keys_lifecycle(
    app: FastAPI, make_user: MakeUser, deployment: Deployment, fake_clock: FakeClock
) -> None:
    user = make_user("Acme", ["investigator", "reviewer"])
    post = user.client.post
    assert (
        post(
            "/api/v1/me/api-keys", json={"name": "k", "scopes": ["admin"], "expires_in_days": 30}
        ).status_code
        == 422
    )
    assert (
        post(
            "/api/v1/me/api-keys", json={"name": "k", "scopes": ["search"], "expires_in_days": 366}
        ).status_code
        == 422
    )
    assert (
        post("/api/v1/me/api-keys", json={"name": "k", "scopes": ["search"]}).status_code == 422
    )  # expiry required
    key = user.api_key(["search"], days=2)
    prefix = key.split("_")[1]
    with deployment.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        assert row is not None and key.split("_", 2)[2] not in row.secret_hash
        assert row.last_used_at is None
    kc = key_client(app, key)
    me = kc.get("/api/v1/me").json()
    assert me["auth"] == "api_key" and me["scopes"] == ["search"]
    listed = user.client.get("/api/v1/me/api-keys").json()
    assert listed[0]["last_used_at"] is not None and "key" not in listed[0]
    # a key cannot mint keys or end sessions everywhere
    assert (
        kc.post(
            "/api/v1/me/api-keys", json={"name": "k2", "scopes": ["search"], "expires_in_days": 1}
        ).status_code
        == 403
    )
    assert kc.post("/api/v1/auth/signout-all").status_code == 403
    assert key_client(app, key[:-2] + "zz").get("/api/v1/me").status_code == 401
    assert key_client(app, "fsk_nothex_x").get("/api/v1/me").status_code == 401
    other = make_user("Other", ["investigator"])
    assert other.client.delete(f"/api/v1/me/api-keys/{listed[0]['id']}").status_code == 404
    fake_clock.advance(days=2, seconds=1)
    assert kc.get("/api/v1/me").status_code == 401
    fake_clock.advance(days=-2, seconds=-2)
    assert user.client.delete(f"/api/v1/me/api-keys/{listed[0]['id']}").status_code == 204
    assert kc.get("/api/v1/me").status_code == 401
    log = actions(deployment)
    assert "apikey.created" in log and "apikey.revoked" in log


def test_no_self_registration(client: TestClient, deployment: Deployment) -> None:
    paths = {p for p in client.get("/api/v1/openapi.json").json()["paths"]}
    assert not any("register" in p or "signup" in p for p in paths)
    with deployment.db.session() as s:
        assert s.scalar(select(User.id)) is None


def test_no_key_whatever_its_scope_manages_sessions_or_keys(
    app: FastAPI, make_user: MakeUser
) -> None:
    """Issue 11, Low: a key of any scope could list and end its owner's sessions and revoke
    its other keys. Only the signed-in person can."""
    user = make_user("Acme", ["org_admin", "investigator", "reviewer", "auditor", "ingestor"])
    other_session = user.sign_in_again()
    keys = {scope: user.api_key([scope]) for scope in ("admin", "search", "review", "audit")}
    listed_sessions = user.client.get("/api/v1/me/sessions").json()
    session_id = next(s["id"] for s in listed_sessions if not s["current"])
    listed_keys = user.client.get("/api/v1/me/api-keys").json()
    for scope, key in keys.items():
        kc = key_client(app, key)
        victim = next(k["id"] for k in listed_keys if k["scopes"] != [scope])
        assert kc.get("/api/v1/me/sessions").status_code == 403, scope
        assert kc.delete(f"/api/v1/me/sessions/{session_id}").status_code == 403, scope
        assert kc.get("/api/v1/me/api-keys").status_code == 403, scope
        assert kc.delete(f"/api/v1/me/api-keys/{victim}").status_code == 403, scope
    assert other_session.get("/api/v1/me").status_code == 200  # nothing was ended
    assert all(k["active"] for k in user.client.get("/api/v1/me/api-keys").json())
    # the person can
    assert user.client.delete(f"/api/v1/me/sessions/{session_id}").status_code == 204
    assert user.client.delete(f"/api/v1/me/api-keys/{listed_keys[0]['id']}").status_code == 204


def test_csrf_tokens_are_stored_hashed(make_user: MakeUser, deployment: Deployment) -> None:
    """Issue 11, Low: the CSRF token was stored as it is; whoever read the database could forge
    a signed-in person's state-changing requests. Only its SHA-256 is stored now."""
    import hashlib

    user = make_user("Acme", ["org_admin"])
    token = str(user.client.headers[CSRF_HEADER])
    with deployment.db.session() as s:
        stored = [row.csrf_token for row in s.scalars(select(UserSession))]
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    body = {"email": "someone@acme.test", "roles": ["investigator"]}
    for leaked in stored:  # what a copy of the database gives an attacker
        reply = user.client.post("/api/v1/invitations", json=body, headers={CSRF_HEADER: leaked})
        assert reply.status_code == 403
    assert user.client.post("/api/v1/invitations", json=body).status_code == 201
    assert user.client.get("/api/v1/me").json()["csrf_token"] is None
