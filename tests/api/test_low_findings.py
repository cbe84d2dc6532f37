"""Issue 11, Low findings: Unicode digits in the second factor, keys of a locked or signed-out-
everywhere account, the trailing-slash redirect's Location."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from facesearch.api.deps import CSRF_HEADER
from tests.api.conftest import MakeUser, key_client


def test_unicode_digits_in_the_second_factor_answer_401(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    for code in ("١٢٣٤٥٦", "１２３４５６", "¹²³⁴⁵⁶", "۱۲۳۴۵۶"):
        c = TestClient(app)
        r = c.post("/api/v1/auth/signin", json={"email": user.email, "password": user.password})
        c.headers[CSRF_HEADER] = r.json()["csrf_token"]
        reply = c.post("/api/v1/auth/mfa/verify", json={"code": code})
        assert reply.status_code in (401, 423), (code, reply.status_code, reply.text)


def test_keys_die_with_a_lockout_and_with_sign_out_everywhere(
    app: FastAPI, make_user: MakeUser
) -> None:
    user = make_user("Acme", ["investigator"])
    key = key_client(app, user.api_key(["search"]))
    assert key.get("/api/v1/me").status_code == 200
    anyone = TestClient(app)
    for _ in range(5):  # anyone who knows the email can lock the account
        anyone.post("/api/v1/auth/signin", json={"email": user.email, "password": "not it at all"})
    assert key.get("/api/v1/me").status_code == 401

    other = make_user("Acme", ["investigator"])
    key2 = key_client(app, other.api_key(["search"]))
    assert key2.get("/api/v1/me").status_code == 200
    assert other.client.post("/api/v1/auth/signout-all").status_code == 204
    assert key2.get("/api/v1/me").status_code == 401


def test_no_redirect_copies_the_host_header(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    reply = user.client.get("/api/v1/me/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert "evil.example" not in reply.headers.get("location", "")
    assert reply.status_code not in (301, 302, 307, 308)
