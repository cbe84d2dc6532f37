"""Passkeys (WebAuthn) as the second factor, in real headless Chromium with its virtual
authenticator (CTAP2, internal transport, resident keys, user verification) against the real app
served by uvicorn on 127.0.0.1. The page is this test's own (served by Playwright's router on the
service's origin, `http://localhost:<port>`, a secure context), not a product web UI; it runs
`navigator.credentials.create/get` against the API."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from facesearch import clock
from facesearch.api.app import create_app
from facesearch.deployment import Deployment
from facesearch.security import totp
from facesearch.security.ratelimit import Limit
from facesearch.store.audit import AuditEntry
from tests.api.conftest import create_user, fast_limiter, new_deployment

playwright_sync = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="needs Debian's chromium (.ci/apt-packages)"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

PAGE = """<!doctype html><meta charset="utf-8"><title>passkey test page</title>
<script>
async function api(method, path, body, csrf) {
  const headers = {"Content-Type": "application/json"};
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, {method, headers, credentials: "same-origin",
                               body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await r.json(); } catch (e) {}
  return {status: r.status, body: data};
}
async function registerPasskey(csrf, name) {
  const o = await api("POST", "/api/v1/me/passkeys/options", {}, csrf);
  if (o.status !== 200) return o;
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(o.body.options);
  const cred = await navigator.credentials.create({publicKey});
  return await api("POST", "/api/v1/me/passkeys", {name, credential: cred.toJSON()}, csrf);
}
async function passkeyAssertion(csrf, path) {
  const o = await api("POST", path || "/api/v1/auth/passkey/options", {}, csrf);
  if (o.status !== 200) return {options: o};
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(o.body.options);
  const cred = await navigator.credentials.get({publicKey});
  return {options: o, credential: cred.toJSON()};
}
</script>"""


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, dep: Deployment, port: int) -> None:
        self.dep = dep
        self.port = port
        self.origin = f"http://localhost:{port}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    dep = new_deployment(tmp_path, public_url=f"http://localhost:{port}", port=port)
    limiter = fast_limiter()
    limiter.limits["mfa:account"] = Limit(1000, 300.0)  # one test runs many ceremonies
    app = create_app(dep, limiter=limiter)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(dep, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        dep.close()


@pytest.fixture
def browser_page(served: Served) -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                    }
                },
            )
            for origin in (served.origin, f"http://127.0.0.1:{served.port}"):
                page.route(
                    f"{origin}/passkey-test",
                    lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE),
                )
            page.goto(f"{served.origin}/passkey-test")
            yield page
        finally:
            browser.close()


def call(page: Any, method: str, path: str, body: Any = None, csrf: str | None = None) -> Any:
    return page.evaluate(
        "([m, p, b, c]) => api(m, p, b === null ? undefined : b, c)", [method, path, body, csrf]
    )


def sign_in_password(page: Any, email: str, password: str) -> str:
    r = call(page, "POST", "/api/v1/auth/signin", {"email": email, "password": password})
    assert r["status"] == 200, r
    return str(r["body"]["csrf_token"])


def test_passkey_registers_and_satisfies_the_second_factor(
    served: Served, browser_page: Any
) -> None:
    page = browser_page
    assert page.evaluate("window.isSecureContext") is True
    _, _, email, password, secret, _ = create_user(served.dep, "Acme", ["investigator"])

    # first sign-in: password and TOTP, then register a passkey (the session is fresh)
    csrf = sign_in_password(page, email, password)
    code = totp.code_at(secret, totp.current_step())
    r = call(page, "POST", "/api/v1/auth/mfa/verify", {"code": code}, csrf)
    assert r["status"] == 200, r
    csrf = r["body"]["csrf_token"]
    r = page.evaluate("([c]) => registerPasskey(c, 'laptop')", [csrf])
    assert r["status"] == 201, r
    assert r["body"]["name"] == "laptop"
    listed = call(page, "GET", "/api/v1/me/passkeys")
    assert [k["name"] for k in listed["body"]] == ["laptop"]
    assert call(page, "POST", "/api/v1/auth/signout", None, csrf)["status"] == 204

    # next sign-in: the password, then the passkey instead of a code
    csrf = sign_in_password(page, email, password)
    assert call(page, "GET", "/api/v1/me")["status"] == 401  # password alone opens nothing
    # an assertion whose client data names another origin (a phishing site) is refused
    got = page.evaluate("([c]) => passkeyAssertion(c)", [csrf])
    forged = dict(got["credential"])
    forged["response"] = dict(forged["response"])
    client_data = json.loads(b64decode(forged["response"]["clientDataJSON"]))
    client_data["origin"] = "http://facesearch.example.evil"
    forged["response"]["clientDataJSON"] = b64encode(json.dumps(client_data).encode())
    r = call(page, "POST", "/api/v1/auth/passkey/verify", {"credential": forged}, csrf)
    assert r["status"] == 401, r
    # the challenge of that ceremony is spent: the genuine answer is refused too
    r = call(page, "POST", "/api/v1/auth/passkey/verify", {"credential": got["credential"]}, csrf)
    assert r["status"] == 401, r
    # a challenge expires after five minutes
    got = page.evaluate("([c]) => passkeyAssertion(c)", [csrf])
    later = datetime.now(UTC) + timedelta(minutes=5, seconds=1)
    clock.set_clock(lambda: later)
    try:
        r = call(
            page, "POST", "/api/v1/auth/passkey/verify", {"credential": got["credential"]}, csrf
        )
    finally:
        clock.set_clock(None)
    assert r["status"] == 401, r
    got = page.evaluate("([c]) => passkeyAssertion(c)", [csrf])
    assert got["options"]["status"] == 200, got
    assert got["options"]["body"]["options"]["rpId"] == "localhost"
    r = call(page, "POST", "/api/v1/auth/passkey/verify", {"credential": got["credential"]}, csrf)
    assert r["status"] == 200, r
    csrf = r["body"]["csrf_token"]
    me = call(page, "GET", "/api/v1/me")
    assert me["status"] == 200 and me["body"]["email"] == email
    # the same assertion again: its challenge is spent
    r = call(page, "POST", "/api/v1/auth/passkey/verify", {"credential": got["credential"]}, csrf)
    assert r["status"] == 401, r
    with served.dep.db.session() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "mfa.verified")).all()
        assert any((e.details or {}).get("method") == "passkey" for e in entries)
        done = set(s.scalars(select(AuditEntry.action)))
    assert {"mfa.passkey_registered", "mfa.failure"} <= done
    notices = call(page, "GET", "/api/v1/me/notices")["body"]
    assert "passkey.registered" in [n["kind"] for n in notices]

    # re-authentication with the password and the passkey once the session is no longer fresh
    stale = datetime.now(UTC) + timedelta(minutes=served.dep.settings.reauth_minutes + 1)
    clock.set_clock(lambda: stale)
    try:
        r = call(page, "POST", "/api/v1/me/recovery-codes", {}, csrf)
        assert r["status"] == 401 and "re-authentication" in r["body"]["detail"], r
        got = page.evaluate(
            "([c]) => passkeyAssertion(c, '/api/v1/auth/reauth/passkey/options')", [csrf]
        )
        assert got["options"]["status"] == 200, got
        body = {"password": "not the password", "credential": got["credential"]}
        r = call(page, "POST", "/api/v1/auth/reauth/passkey", body, csrf)
        assert r["status"] == 401, r
        got = page.evaluate(
            "([c]) => passkeyAssertion(c, '/api/v1/auth/reauth/passkey/options')", [csrf]
        )
        body = {"password": password, "credential": got["credential"]}
        r = call(page, "POST", "/api/v1/auth/reauth/passkey", body, csrf)
        assert r["status"] == 200, r
        assert call(page, "POST", "/api/v1/me/recovery-codes", {}, csrf)["status"] == 200
    finally:
        clock.set_clock(None)

    # removing it (the session is fresh)
    passkey_id = listed["body"][0]["id"]
    r = call(page, "DELETE", f"/api/v1/me/passkeys/{passkey_id}", None, csrf)
    assert r["status"] == 204, r
    assert call(page, "GET", "/api/v1/me/passkeys")["body"] == []
    assert call(page, "POST", "/api/v1/auth/signout", None, csrf)["status"] == 204
    csrf = sign_in_password(page, email, password)
    r = call(page, "POST", "/api/v1/auth/passkey/options", {}, csrf)
    assert r["status"] == 409  # no passkey any more: a TOTP code instead


def test_a_passkey_does_not_work_for_another_origin(served: Served, browser_page: Any) -> None:
    """Phishing resistance: the same page on another origin (127.0.0.1 instead of the
    service's localhost) cannot use the credential; the browser refuses the RP id."""
    page = browser_page
    _, _, email, password, secret, _ = create_user(served.dep, "Acme", ["investigator"])
    csrf = sign_in_password(page, email, password)
    r = call(
        page,
        "POST",
        "/api/v1/auth/mfa/verify",
        {"code": totp.code_at(secret, totp.current_step())},
        csrf,
    )
    csrf = r["body"]["csrf_token"]
    assert page.evaluate("([c]) => registerPasskey(c, 'laptop')", [csrf])["status"] == 201
    other = page.context.new_page()
    other.goto(f"http://127.0.0.1:{served.port}/passkey-test")
    with pytest.raises(playwright_sync.Error) as caught:
        other.evaluate(
            """async () => {
                const publicKey = {challenge: new Uint8Array(32), rpId: 'localhost',
                                   userVerification: 'required'};
                return await navigator.credentials.get({publicKey});
            }"""
        )
    assert "SecurityError" in str(caught.value) or "not a valid domain" in str(caught.value)
