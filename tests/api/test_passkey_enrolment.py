"""A passkey as the only second factor: enrolment from an invitation with a passkey instead of
TOTP, sign-in with password and passkey, recovery codes, adding TOTP later, the last second
factor kept, and what a password alone (an enrolment link's password) can no longer do once the
account has a second factor. Ceremonies are answered by a software authenticator
(tests/api/soft_passkey.py), so the server's real WebAuthn verification runs."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from facesearch.api.deps import CSRF_HEADER
from facesearch.deployment import Deployment
from facesearch.security import accounts, admin, audit, passkeys, totp
from facesearch.security.actor import system_actor
from facesearch.store.accounts import Organisation, Passkey, User
from facesearch.store.audit import AuditEntry
from tests.api.conftest import MakeUser
from tests.api.soft_passkey import SoftPasskey

PASSWORD = "a sturdy passphrase 4 passkeys"


def invited(dep: Deployment, client: TestClient, email: str, roles: list[str]) -> None:
    with dep.db.session() as s:
        org = s.scalar(select(Organisation).where(Organisation.name == "Acme"))
        if org is None:
            org = admin.create_organisation(s, system_actor(), "Acme")
        token = accounts.create_invitation(
            s, system_actor(), org_id=org.id, email=email, roles=roles
        ).token
        s.commit()
    r = client.post("/api/v1/invitations/accept", json={"token": token, "password": PASSWORD})
    assert r.status_code == 201, r.text


def password_only(app: FastAPI, email: str, password: str = PASSWORD) -> tuple[TestClient, Any]:
    c = TestClient(app)
    r = c.post("/api/v1/auth/signin", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    return c, r.json()


def enrol_passkey(c: TestClient, key: SoftPasskey, name: str = "laptop") -> Any:
    r = c.post("/api/v1/auth/passkey/enrol/options")
    assert r.status_code == 200, r.text
    credential = key.create(r.json()["options"])
    return c.post("/api/v1/auth/passkey/enrol", json={"name": name, "credential": credential})


def passkey_sign_in(c: TestClient, key: SoftPasskey) -> Any:
    r = c.post("/api/v1/auth/passkey/options")
    assert r.status_code == 200, r.text
    return c.post("/api/v1/auth/passkey/verify", json={"credential": key.get(r.json()["options"])})


def audit_rows(dep: Deployment, action: str) -> list[AuditEntry]:
    with dep.db.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def user_row(dep: Deployment, email: str) -> User:
    with dep.db.session() as s:
        user = s.scalar(select(User).where(User.email == email))
        assert user is not None
        s.expunge(user)
        return user


def enrolled_with_passkey(
    app: FastAPI, dep: Deployment, client: TestClient, email: str
) -> tuple[TestClient, SoftPasskey, list[str]]:
    invited(dep, client, email, ["investigator"])
    c, _ = password_only(app, email)
    key = SoftPasskey(dep)
    r = enrol_passkey(c, key)
    assert r.status_code == 200, r.text
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    return c, key, r.json()["recovery_codes"]


def test_an_invited_user_enrols_with_only_a_passkey_and_signs_in_with_it(
    app: FastAPI, deployment: Deployment, client: TestClient
) -> None:
    invited(deployment, client, "pia@acme.test", ["investigator"])
    c, signin = password_only(app, "pia@acme.test")
    assert signin["mfa_enrolled"] is False and signin["methods"] == []
    assert c.get("/api/v1/me").status_code == 401  # the password alone opens nothing
    key = SoftPasskey(deployment)
    r = enrol_passkey(c, key, "work laptop")
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10  # shown once, as after TOTP
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    me = c.get("/api/v1/me").json()
    assert me["mfa_enrolled"] is True and me["second_factors"] == ["passkey"]
    assert me["recovery_codes_remaining"] == 10
    assert [p["name"] for p in c.get("/api/v1/me/passkeys").json()] == ["work laptop"]
    user = user_row(deployment, "pia@acme.test")
    assert user.totp_verified_at is None and user.totp_secret is None
    (enrolled,) = audit_rows(deployment, "mfa.enrolled")
    assert enrolled.actor_user_id == user.id and enrolled.org_id == user.org_id
    assert enrolled.details == {"method": "passkey", "recovery_codes_issued": 10}
    assert audit_rows(deployment, "mfa.passkey_registered")[0].actor_user_id == user.id
    assert c.post("/api/v1/auth/signout").status_code == 204

    # next sign-in: password, then the passkey; no TOTP is asked for or accepted
    c, signin = password_only(app, "pia@acme.test")
    assert signin["mfa_enrolled"] is True and signin["methods"] == ["passkey"]
    assert signin["next"] == "/api/v1/auth/passkey/options"
    r = c.post("/api/v1/auth/mfa/verify", json={"code": "123456"})
    assert r.status_code == 401
    assert c.post("/api/v1/auth/mfa/enrol").status_code == 409
    r = passkey_sign_in(c, key)
    assert r.status_code == 200, r.text
    c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    assert c.get("/api/v1/me").json()["email"] == "pia@acme.test"
    # a recovery code is the way back from a lost passkey
    c2, _ = password_only(app, "pia@acme.test")
    r = c2.post("/api/v1/auth/mfa/verify", json={"code": codes[0]})
    assert r.status_code == 200 and r.json()["used_recovery_code"] is True
    assert r.json()["recovery_codes_remaining"] == 9
    with deployment.db.session() as s:
        assert audit.verify_chain(s).ok


def test_a_password_alone_cannot_add_a_second_factor_once_one_exists(
    app: FastAPI, deployment: Deployment, client: TestClient
) -> None:
    """An intruder holding the enrolment link and the password chosen with it."""
    invited(deployment, client, "ola@acme.test", ["reviewer"])
    owner, _ = password_only(app, "ola@acme.test")
    intruder, _ = password_only(app, "ola@acme.test")
    # both sessions are still at enrolment: the intruder starts a TOTP enrolment and a passkey
    # ceremony of its own before the owner finishes
    r = intruder.post("/api/v1/auth/mfa/enrol")
    assert r.status_code == 200
    intruder_secret = r.json()["secret"]
    r = intruder.post("/api/v1/auth/passkey/enrol/options")
    assert r.status_code == 200
    intruder_key = SoftPasskey(deployment)
    intruder_credential = intruder_key.create(r.json()["options"])
    # the owner enrols a passkey: the account now has its second factor
    r = enrol_passkey(owner, SoftPasskey(deployment))
    assert r.status_code == 200, r.text

    # the intruder's ceremony, finished afterwards, adds nothing
    r = intruder.post(
        "/api/v1/auth/passkey/enrol", json={"name": "mine", "credential": intruder_credential}
    )
    assert r.status_code == 409, r.text
    # nor does a code of the TOTP secret it started (its enrolment was never confirmed)
    code = totp.code_at(intruder_secret, totp.current_step())
    assert intruder.post("/api/v1/auth/mfa/verify", json={"code": code}).status_code == 401
    assert intruder.get("/api/v1/me").status_code == 401
    # a new password-only session gets no enrolment at all
    again, _ = password_only(app, "ola@acme.test")
    assert again.post("/api/v1/auth/passkey/enrol/options").status_code == 409
    assert again.post("/api/v1/auth/mfa/enrol").status_code == 409
    # and the routes for more passkeys need the verified (and fresh) session
    assert again.post("/api/v1/me/passkeys/options").status_code == 401
    assert again.post("/api/v1/me/passkeys", json={"credential": {}}).status_code == 401
    assert again.post("/api/v1/me/mfa/enrol").status_code == 401
    user = user_row(deployment, "ola@acme.test")
    assert user.totp_verified_at is None
    with deployment.db.session() as s:
        assert len(s.scalars(select(Passkey).where(Passkey.user_id == user.id)).all()) == 1
    assert len(audit_rows(deployment, "mfa.enrolled")) == 1
    failures = audit_rows(deployment, "mfa.failure")
    assert failures and failures[-1].actor_user_id == user.id
    # each refusal is on the record, as each enrolment step is
    refused = audit_rows(deployment, "mfa.enrolment_refused")
    assert {(e.details or {}).get("method") for e in refused} == {"passkey", "totp"}
    assert all(e.actor_user_id == user.id and e.org_id == user.org_id for e in refused)
    started = audit_rows(deployment, "mfa.enrolment_started")
    assert {(e.details or {}).get("method") for e in started} == {"passkey", "totp"}


def test_enrolment_by_passkey_checks_the_ceremony(
    app: FastAPI, deployment: Deployment, client: TestClient
) -> None:
    invited(deployment, client, "eve@acme.test", ["investigator"])
    c, _ = password_only(app, "eve@acme.test")
    # a credential made for another origin (a phishing site) is refused, and its challenge spent
    phished = SoftPasskey(deployment, origin="http://facesearch.example.evil")
    r = enrol_passkey(c, phished)
    assert r.status_code == 422, r.text
    # without options first there is no challenge to answer
    r = c.post(
        "/api/v1/auth/passkey/enrol",
        json={
            "credential": SoftPasskey(deployment).create(
                {"rp": {"id": "localhost"}, "challenge": "AAAA"}
            )
        },
    )
    assert r.status_code == 401
    # without the password-only session's CSRF header nothing happens
    bare = TestClient(app, cookies=c.cookies)
    assert bare.post("/api/v1/auth/passkey/enrol/options").status_code == 403
    anonymous = TestClient(app)
    assert anonymous.post("/api/v1/auth/passkey/enrol/options").status_code == 401
    assert user_row(deployment, "eve@acme.test").totp_verified_at is None
    assert not audit_rows(deployment, "mfa.enrolled")
    # the account still enrols with a genuine one afterwards
    assert enrol_passkey(c, SoftPasskey(deployment)).status_code == 200


def test_a_passkey_only_user_adds_totp_later_and_keeps_a_last_factor(
    app: FastAPI, deployment: Deployment, client: TestClient
) -> None:
    c, key, _codes = enrolled_with_passkey(app, deployment, client, "kai@acme.test")
    (only,) = c.get("/api/v1/me/passkeys").json()
    # the only second factor cannot be removed
    r = c.delete(f"/api/v1/me/passkeys/{only['id']}")
    assert r.status_code == 409 and "only second factor" in r.json()["detail"]
    refused = audit_rows(deployment, "mfa.passkey_remove_refused")
    assert refused and refused[0].details == {"reason": "last second factor"}
    # a second passkey from My account (the session is fresh after enrolment)
    other = SoftPasskey(deployment)
    r = c.post("/api/v1/me/passkeys/options")
    assert r.status_code == 200, r.text
    r = c.post(
        "/api/v1/me/passkeys",
        json={"name": "phone", "credential": other.create(r.json()["options"])},
    )
    assert r.status_code == 201, r.text
    assert c.delete(f"/api/v1/me/passkeys/{only['id']}").status_code == 204
    (phone,) = c.get("/api/v1/me/passkeys").json()
    assert c.delete(f"/api/v1/me/passkeys/{phone['id']}").status_code == 409

    # an authenticator app beside the passkey
    r = c.post("/api/v1/me/mfa/enrol")
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    r = c.post("/api/v1/me/mfa/confirm", json={"code": totp.code_at(secret, totp.current_step())})
    assert r.status_code == 200, r.text
    assert len(r.json()["recovery_codes"]) == 10
    me = c.get("/api/v1/me").json()
    assert me["second_factors"] == ["totp", "passkey"]
    added = audit_rows(deployment, "mfa.totp_added")
    assert added and added[0].details == {"recovery_codes_issued": 10}
    # now the last passkey may go: TOTP remains
    assert c.delete(f"/api/v1/me/passkeys/{phone['id']}").status_code == 204
    assert c.get("/api/v1/me").json()["second_factors"] == ["totp"]
    c2, signin = password_only(app, "kai@acme.test")
    assert signin["methods"] == ["totp"] and signin["next"] == "/api/v1/auth/mfa/verify"
    code = totp.code_at(secret, totp.current_step() + 1)
    assert c2.post("/api/v1/auth/mfa/verify", json={"code": code}).status_code == 200
    del key


def test_a_totp_user_adds_a_passkey_and_signs_in_with_either(
    app: FastAPI, deployment: Deployment, make_user: MakeUser
) -> None:
    user = make_user("Acme", ["investigator"])
    # the enrolment routes are not a way to add factors for an enrolled account
    c, signin = password_only(app, user.email, user.password)
    assert signin["methods"] == ["totp"]
    assert c.post("/api/v1/auth/passkey/enrol/options").status_code == 409
    key = SoftPasskey(deployment)
    r = user.client.post("/api/v1/me/passkeys/options")
    assert r.status_code == 200, r.text
    r = user.client.post(
        "/api/v1/me/passkeys",
        json={"name": "laptop", "credential": key.create(r.json()["options"])},
    )
    assert r.status_code == 201, r.text
    c, signin = password_only(app, user.email, user.password)
    assert signin["methods"] == ["totp", "passkey"]
    assert passkey_sign_in(c, key).status_code == 200


def test_administrators_and_resets_see_a_passkey_as_a_second_factor(
    app: FastAPI, deployment: Deployment, client: TestClient, make_user: MakeUser
) -> None:
    boss = make_user("Acme", ["org_admin"])
    c, key, _ = enrolled_with_passkey(app, deployment, client, "lea@acme.test")
    listed = {u["email"]: u for u in boss.client.get("/api/v1/users").json()}
    assert listed["lea@acme.test"]["mfa_enrolled"] is True
    # re-authentication of a passkey-only account: password and a passkey, or a recovery code
    r = c.post("/api/v1/auth/reauth/passkey/options")
    assert r.status_code == 200, r.text
    body = {"password": PASSWORD, "credential": key.get(r.json()["options"])}
    assert c.post("/api/v1/auth/reauth/passkey", json=body).status_code == 200
    # a reset that clears the second factor removes the passkeys too: enrol anew
    uid = listed["lea@acme.test"]["id"]
    r = boss.client.post(f"/api/v1/users/{uid}/password-reset", json={"reset_second_factor": True})
    if r.status_code == 401:  # not fresh: the administrator re-authenticates first
        reauth = {"password": boss.password, "code": boss.totp_code(1)}
        assert boss.client.post("/api/v1/auth/reauth", json=reauth).status_code == 200
        r = boss.client.post(
            f"/api/v1/users/{uid}/password-reset", json={"reset_second_factor": True}
        )
    assert r.status_code in (200, 201), r.text
    new_password = PASSWORD + " renewed"
    r = client.post(
        "/api/v1/auth/password-reset/accept",
        json={"token": r.json()["token"], "password": new_password},
    )
    assert r.status_code == 200, r.text
    (reset,) = audit_rows(deployment, "user.password_reset")
    assert reset.details is not None and reset.details["passkeys_removed"] == 1
    c, signin = password_only(app, "lea@acme.test", new_password)
    assert signin["mfa_enrolled"] is False and signin["methods"] == []
    listed = {u["email"]: u for u in boss.client.get("/api/v1/users").json()}
    assert listed["lea@acme.test"]["mfa_enrolled"] is False
    assert enrol_passkey(c, SoftPasskey(deployment)).status_code == 200


def test_two_enrolments_racing_each_other_cannot_both_succeed(
    app: FastAPI, deployment: Deployment, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner's enrolment commits while the intruder's ceremony is being verified (after the
    intruder's request passed the first check): the account's row is locked and checked again
    before the intruder's passkey is stored."""
    invited(deployment, client, "ray@acme.test", ["reviewer"])
    intruder, _ = password_only(app, "ray@acme.test")
    r = intruder.post("/api/v1/auth/passkey/enrol/options")
    credential = SoftPasskey(deployment).create(r.json()["options"])
    user_id = user_row(deployment, "ray@acme.test").id
    real = passkeys.verify_registration_response

    def owner_enrols_meanwhile(**kwargs: Any) -> Any:
        verified = real(**kwargs)
        with deployment.db.session() as s:  # another request, committed in the meantime
            s.add(Passkey(user_id=user_id, credential_id=b"owner", public_key=b"k", name="owner"))
        return verified

    monkeypatch.setattr(passkeys, "verify_registration_response", owner_enrols_meanwhile)
    r = intruder.post("/api/v1/auth/passkey/enrol", json={"credential": credential})
    assert r.status_code == 409, r.text
    assert "already has a second factor" in r.json()["detail"]
    with deployment.db.session() as s:
        names = s.scalars(select(Passkey.name).where(Passkey.user_id == user_id)).all()
    assert names == ["owner"]
    assert intruder.get("/api/v1/me").status_code == 401
    assert not audit_rows(deployment, "mfa.enrolled")
