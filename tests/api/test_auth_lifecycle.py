"""The account lifecycle over the real app (issue 11, "Missing account lifecycle"): password
change, an administrator's reset link and unlock, second-factor re-enrolment, recovery-code
regeneration, and re-authentication before sensitive actions."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facesearch.api.deps import CSRF_HEADER
from facesearch.cli import app as cli_app
from facesearch.deployment import Deployment
from facesearch.search import review
from facesearch.security import totp
from facesearch.store.accounts import User
from tests.api.conftest import (
    MakeUser,
    SignedIn,
    create_user,
    key_client,
    make_app,
    new_deployment,
    sign_in,
)
from tests.api.test_auth import GOOD_PASSWORD, FakeClock, actions, fake_clock, sign_in_password

__all__ = ["fake_clock"]  # the fixture, shared with test_auth

NEW_PASSWORD = "another sturdy passphrase 7"


def second_factor(user: SignedIn, secret: str | None = None) -> list[str]:
    """Codes to try, in order: this step's, the next step's, then a recovery code."""
    secret = secret or user.totp_secret
    step = totp.current_step()
    codes = [totp.code_at(secret, step), totp.code_at(secret, step + 1)]
    return codes + user.recovery_codes[-1:]


def reauth(user: SignedIn, password: str | None = None) -> int:
    status = 0
    for code in second_factor(user):
        r = user.client.post(
            "/api/v1/auth/reauth", json={"password": password or user.password, "code": code}
        )
        status = int(r.status_code)
        if status == 200:
            if code in user.recovery_codes:
                user.recovery_codes.remove(code)
            return status
    return status


# -- password change ------------------------------------------------------------------------------
def test_password_change_needs_the_current_one_and_ends_other_sessions(
    app: FastAPI, make_user: MakeUser, deployment: Deployment
) -> None:
    user = make_user("Acme", ["investigator"])
    other = user.sign_in_again()
    body = {"current_password": "not it at all", "new_password": NEW_PASSWORD}
    r = user.client.post("/api/v1/me/password", json=body)
    assert r.status_code == 401 and r.json()["detail"] == "wrong password"
    with deployment.db.session() as s:
        assert s.get(User, user.user_id).failed_logins == 1  # type: ignore[union-attr]
    r = user.client.post(
        "/api/v1/me/password", json={"current_password": user.password, "new_password": "password1"}
    )
    assert r.status_code == 422
    r = user.client.post(
        "/api/v1/me/password",
        json={"current_password": user.password, "new_password": user.password},
    )
    assert r.status_code == 422
    r = user.client.post(
        "/api/v1/me/password",
        json={"current_password": user.password, "new_password": NEW_PASSWORD},
    )
    assert r.status_code == 200 and r.json() == {"other_sessions_ended": 1}
    assert other.get("/api/v1/me").status_code == 401
    assert user.client.get("/api/v1/me").status_code == 200  # this one goes on
    assert sign_in_password(app, user.email, user.password)[1] == 401
    assert sign_in_password(app, user.email, NEW_PASSWORD)[1] == 200
    assert "user.password_changed" in actions(deployment)
    # a key cannot change its owner's password
    key = key_client(app, user.api_key(["search"]))
    r = key.post(
        "/api/v1/me/password",
        json={"current_password": NEW_PASSWORD, "new_password": GOOD_PASSWORD},
    )
    assert r.status_code == 403


def test_password_change_wrong_guesses_lock_the_account(make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    for _ in range(4):
        r = user.client.post(
            "/api/v1/me/password",
            json={"current_password": "guess guess guess", "new_password": NEW_PASSWORD},
        )
        assert r.status_code == 401
    r = user.client.post(
        "/api/v1/me/password",
        json={"current_password": "guess guess guess", "new_password": NEW_PASSWORD},
    )
    assert r.status_code in (401, 423)  # locked: the lockout also ended the session
    assert user.client.get("/api/v1/me").status_code == 401


# -- re-authentication ----------------------------------------------------------------------------
def test_sensitive_actions_need_a_recent_reauthentication(
    app: FastAPI, make_user: MakeUser, deployment: Deployment, fake_clock: FakeClock
) -> None:
    boss = make_user("Acme", ["org_admin"])
    worker = make_user("Acme", ["investigator"])
    admin_key = boss.api_key(["admin"])  # fresh from sign-in: allowed
    fake_clock.advance(minutes=deployment.settings.reauth_minutes + 1)
    invite = {"email": "new@acme.test", "roles": ["investigator"]}
    attempts = [
        boss.client.post("/api/v1/invitations", json=invite),
        boss.client.put(f"/api/v1/users/{worker.uid}/roles", json={"roles": ["reviewer"]}),
        boss.client.post(
            "/api/v1/me/api-keys", json={"name": "k", "scopes": ["admin"], "expires_in_days": 5}
        ),
        boss.client.post(f"/api/v1/users/{worker.uid}/password-reset", json={}),
        boss.client.post(f"/api/v1/users/{worker.uid}/unlock"),
        boss.client.post("/api/v1/me/mfa/enrol"),
        boss.client.post("/api/v1/me/recovery-codes"),
    ]
    for r in attempts:
        assert r.status_code == 401, r.text
        assert r.json()["detail"].startswith("re-authentication required")
        assert "auth/reauth endpoint" in r.json()["detail"]
    # what is not sensitive goes on
    assert boss.client.get("/api/v1/users").status_code == 200
    r = worker.client.post(
        "/api/v1/me/api-keys", json={"name": "k", "scopes": ["search"], "expires_in_days": 5}
    )
    assert r.status_code == 201
    # a wrong password or code does not re-authenticate (and counts)
    r = boss.client.post(
        "/api/v1/auth/reauth", json={"password": "nope nope nope", "code": "123456"}
    )
    assert r.status_code == 401
    r = boss.client.post("/api/v1/auth/reauth", json={"password": boss.password, "code": "000000"})
    assert r.status_code == 401
    assert boss.client.post("/api/v1/invitations", json=invite).status_code == 401
    assert reauth(boss) == 200
    assert boss.client.post("/api/v1/invitations", json=invite).status_code == 201
    r = boss.client.put(f"/api/v1/users/{worker.uid}/roles", json={"roles": ["reviewer"]})
    assert r.status_code == 200
    # a key cannot re-authenticate; its admin scope was granted by a fresh session
    assert key_client(app, admin_key).get("/api/v1/users").status_code == 200
    r = key_client(app, admin_key).post(
        "/api/v1/auth/reauth", json={"password": boss.password, "code": "123456"}
    )
    assert r.status_code == 403
    # freshness runs out again
    fake_clock.advance(minutes=deployment.settings.reauth_minutes + 1)
    assert boss.client.post("/api/v1/invitations", json=invite).status_code == 401
    assert "auth.reauth" in actions(deployment)


def test_reauthentication_needs_a_verified_session(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    half, status = sign_in_password(app, user.email, user.password)
    assert status == 200
    r = half.post("/api/v1/auth/reauth", json={"password": user.password, "code": "123456"})
    assert r.status_code == 401
    assert (
        TestClient(app)
        .post("/api/v1/auth/reauth", json={"password": user.password, "code": "123456"})
        .status_code
        == 401
    )


# -- administrator reset and unlock ---------------------------------------------------------------
def test_admin_reset_link_sets_a_new_password_once(
    app: FastAPI, make_user: MakeUser, deployment: Deployment, client: TestClient
) -> None:
    boss = make_user("Acme", ["org_admin"])
    stranger = make_user("Other", ["org_admin"])
    worker = make_user("Acme", ["investigator"])
    assert (
        stranger.client.post(f"/api/v1/users/{worker.uid}/password-reset", json={}).status_code
        == 404
    )
    assert boss.client.post(f"/api/v1/users/{boss.uid}/password-reset", json={}).status_code == 409
    r = boss.client.post(f"/api/v1/users/{worker.uid}/password-reset", json={"expires_in_hours": 2})
    assert r.status_code == 201, r.text
    first = r.json()
    assert "#token=" in first["link"] and first["token"] not in first["link"].split("#")[0]
    r = boss.client.post(f"/api/v1/users/{worker.uid}/password-reset", json={})
    token = r.json()["token"]
    # an earlier link dies when a new one is issued
    r = client.post(
        "/api/v1/auth/password-reset/accept",
        json={"token": first["token"], "password": NEW_PASSWORD},
    )
    assert r.status_code == 410
    # the old password works until the link is used
    assert worker.client.get("/api/v1/me").status_code == 200
    r = client.post(
        "/api/v1/auth/password-reset/accept", json={"token": token, "password": "password1"}
    )
    assert r.status_code == 422
    r = client.post(
        "/api/v1/auth/password-reset/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    assert r.status_code == 200 and r.json()["email"] == worker.email
    assert worker.client.get("/api/v1/me").status_code == 401  # sessions ended
    r = client.post(
        "/api/v1/auth/password-reset/accept", json={"token": token, "password": GOOD_PASSWORD}
    )
    assert r.status_code == 410  # single use
    assert sign_in_password(app, worker.email, worker.password)[1] == 401
    half, status = sign_in_password(app, worker.email, NEW_PASSWORD)
    assert status == 200
    # the second factor must be verified again
    assert half.get("/api/v1/me").status_code == 401
    fresh = sign_in(app, worker.email, NEW_PASSWORD, worker.totp_secret, worker.recovery_codes)
    assert fresh.get("/api/v1/me").status_code == 200
    assert {"user.password_reset_issued", "user.password_reset"} <= set(actions(deployment))


def test_reset_that_clears_the_second_factor_and_expiry(
    app: FastAPI, make_user: MakeUser, client: TestClient, fake_clock: FakeClock
) -> None:
    boss = make_user("Acme", ["org_admin"])
    worker = make_user("Acme", ["investigator"])
    r = boss.client.post(
        f"/api/v1/users/{worker.uid}/password-reset",
        json={"expires_in_hours": 1, "reset_second_factor": True},
    )
    token = r.json()["token"]
    fake_clock.advance(hours=1, seconds=1)
    r = client.post(
        "/api/v1/auth/password-reset/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    assert r.status_code == 410  # expired
    boss.client = boss.sign_in_again()  # an hour idle ended the session
    r = boss.client.post(
        f"/api/v1/users/{worker.uid}/password-reset", json={"reset_second_factor": True}
    )
    token = r.json()["token"]
    r = client.post(
        "/api/v1/auth/password-reset/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    assert r.status_code == 200
    c = TestClient(app)
    r = c.post("/api/v1/auth/signin", json={"email": worker.email, "password": NEW_PASSWORD})
    assert r.status_code == 200 and r.json()["mfa_enrolled"] is False
    assert r.json()["next"] == "/api/v1/auth/mfa/enrol"
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    # the old authenticator and recovery codes are gone
    r = c.post("/api/v1/auth/mfa/verify", json={"code": worker.recovery_codes[0]})
    assert r.status_code == 409


def test_admin_unlocks_a_locked_account(
    app: FastAPI, make_user: MakeUser, deployment: Deployment
) -> None:
    boss = make_user("Acme", ["org_admin"])
    worker = make_user("Acme", ["investigator"])
    for _ in range(5):
        sign_in_password(app, worker.email, "wrong wrong wrong")
    assert sign_in_password(app, worker.email, worker.password)[1] == 423
    assert boss.client.get(f"/api/v1/users/{worker.uid}").json()["locked"] is True
    other = make_user("Other", ["org_admin"])
    assert other.client.post(f"/api/v1/users/{worker.uid}/unlock").status_code == 404
    r = boss.client.post(f"/api/v1/users/{worker.uid}/unlock")
    assert r.status_code == 200 and r.json()["locked"] is False
    assert sign_in_password(app, worker.email, worker.password)[1] == 200
    with deployment.db.session() as s:
        row = s.get(User, worker.user_id)
        assert row is not None and row.failed_logins == 0 and row.mfa_failures == 0
    assert "user.unlocked" in actions(deployment)


# -- second factor --------------------------------------------------------------------------------
def test_second_factor_reenrolment(
    app: FastAPI, make_user: MakeUser, deployment: Deployment
) -> None:
    user = make_user("Acme", ["investigator"])
    assert user.client.post("/api/v1/me/mfa/confirm", json={"code": "123456"}).status_code == 409
    r = user.client.post("/api/v1/me/mfa/enrol")
    assert r.status_code == 200, r.text
    new_secret = r.json()["secret"]
    assert r.json()["otpauth_uri"].startswith("otpauth://totp/")
    # meanwhile the enrolled secret still works
    again = sign_in(app, user.email, user.password, user.totp_secret, user.recovery_codes)
    assert again.get("/api/v1/me").status_code == 200
    r = user.client.post("/api/v1/me/mfa/confirm", json={"code": "000000"})
    assert r.status_code == 401
    old_codes = list(user.recovery_codes)
    r = user.client.post(
        "/api/v1/me/mfa/confirm", json={"code": totp.code_at(new_secret, totp.current_step())}
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["recovery_codes"]) == 10
    # the old secret and the old recovery codes stop working
    half, _ = sign_in_password(app, user.email, user.password)
    step = totp.current_step()
    for code in [totp.code_at(user.totp_secret, step + 1), old_codes[0]]:
        assert half.post("/api/v1/auth/mfa/verify", json={"code": code}).status_code == 401
    r = half.post("/api/v1/auth/mfa/verify", json={"code": totp.code_at(new_secret, step + 1)})
    assert r.status_code == 200
    assert "mfa.reenrolled" in actions(deployment)


def test_recovery_codes_regenerate(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    old = list(user.recovery_codes)
    r = user.client.post("/api/v1/me/recovery-codes")
    assert r.status_code == 200
    new = r.json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert user.client.get("/api/v1/me").json()["recovery_codes_remaining"] == 10
    half, _ = sign_in_password(app, user.email, user.password)
    assert half.post("/api/v1/auth/mfa/verify", json={"code": old[0]}).status_code == 401
    assert half.post("/api/v1/auth/mfa/verify", json={"code": new[0]}).status_code == 200


def test_operator_unlocks_a_platform_administrator(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path)
    try:
        app = make_app(dep)
        _, _, email, password, _, _ = create_user(dep, None, ["platform_admin"])
        for _ in range(5):
            sign_in_password(app, email, "wrong wrong wrong")
        assert sign_in_password(app, email, password)[1] == 423
    finally:
        dep.close()
    base = [
        "--home",
        str(tmp_path / "home"),
        "--key-file",
        str(tmp_path / "keys" / "deployment.key"),
    ]
    result = CliRunner().invoke(cli_app, [*base, "admin", "unlock", "--email", email])
    assert result.exit_code == 0, result.output
    assert "unlocked" in result.output
    dep = Deployment.open(dep.settings)
    try:
        assert sign_in_password(make_app(dep), email, password)[1] == 200
        assert "user.unlocked" in actions(dep)
    finally:
        dep.close()
    result = CliRunner().invoke(cli_app, [*base, "admin", "unlock", "--email", "nobody@x.test"])
    assert result.exit_code != 0


def test_a_reset_that_clears_the_second_factor_counts_as_an_invitation(
    make_user: MakeUser, deployment: Deployment, client: TestClient
) -> None:
    """Separation of duties: whoever holds such a link can take the account over, so for the
    independence of two-person review the resetting administrator is the account's inviter."""
    boss = make_user("Acme", ["org_admin"])
    reviewer = make_user("Acme", ["reviewer"])
    with deployment.db.session() as s:
        assert review._invited(s, reviewer.user_id) == (None, None)
    r = boss.client.post(
        f"/api/v1/users/{reviewer.uid}/password-reset", json={"reset_second_factor": False}
    )
    token = r.json()["token"]
    client.post(
        "/api/v1/auth/password-reset/accept", json={"token": token, "password": NEW_PASSWORD}
    )
    with deployment.db.session() as s:
        assert review._invited(s, reviewer.user_id)[0] is None  # the user's own factor stays
    r = boss.client.post(
        f"/api/v1/users/{reviewer.uid}/password-reset", json={"reset_second_factor": True}
    )
    token = r.json()["token"]
    client.post(
        "/api/v1/auth/password-reset/accept", json={"token": token, "password": GOOD_PASSWORD}
    )
    with deployment.db.session() as s:
        assert review._invited(s, reviewer.user_id)[0] == boss.user_id
