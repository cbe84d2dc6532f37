"""Fixtures for the web application's browser tests (tests/web): a real uvicorn server on
127.0.0.1 with a fresh data directory, Debian's headless Chromium driven by Playwright, and
helpers shared by every screen's tests.

- `web` (module scope): a `WebServer` (deployment, origin `http://localhost:<port>`, a secure
  context, so passkeys and the service worker work). A test module sets its own settings with
  `WEB_SETTINGS = {...}` at module level (e.g. a short `session_idle_minutes`).
- `browser` (module scope) and `page` (per test: a fresh context at 1280x800, so no cookie or
  storage leaks between tests). `virtual_authenticator(page)` adds Chromium's CTAP2 platform
  authenticator over CDP (passkeys).
- `enrolled_user(web, org, roles)`: an account with a TOTP second factor (tests/api's
  `create_user`); `invite(web, org, roles)`: an invitation through the real service, with its
  enrolment link `/enrol#token=…`.
- `sign_in(page, web, user)`: through the sign-in screen, with a TOTP code from pyotp.
- `assert_no_serious_axe_violations(page)`: axe-core (vendored in tests/web/vendor, MPL-2.0)
  finds no serious or critical violation on what the page shows now.
- `screenshots(page, name)`: `docs/screenshots/<name>-360.png` and `<name>-1280.png`.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from facesearch.api.app import create_app
from facesearch.deployment import Deployment
from facesearch.security import accounts, admin
from facesearch.security.actor import system_actor
from facesearch.security.ratelimit import Limit
from facesearch.store.accounts import Organisation
from tests.api.conftest import _fast_argon2, create_user, fast_limiter, new_deployment

__all__ = ["_fast_argon2"]  # the session-wide fast argon2 fixture of tests/api, here too

playwright_sync = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
WIDTHS = (360, 1280)
DESKTOP = {"width": 1280, "height": 800}

if shutil.which(CHROMIUM) is None:  # pragma: no cover - CI installs it (.ci/apt-packages)
    pytest.skip("needs Debian's chromium (.ci/apt-packages)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebServer:
    dep: Deployment
    port: int
    server: Any = None

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path


@dataclass
class User:
    user_id: Any
    org_id: Any
    email: str
    password: str
    totp_secret: str
    roles: list[str]
    recovery_codes: list[str] = field(default_factory=list)

    def code(self, offset: int = 0) -> str:
        return totp_code(self.totp_secret, offset)


def totp_code(secret: str, offset: int = 0) -> str:
    """The code an authenticator app shows (pyotp, independent of facesearch's own TOTP)."""
    return str(pyotp.TOTP(secret).at(time.time() + 30 * offset))


@dataclass
class Invitation:
    email: str
    token: str
    link: str  # the enrolment link as the server prints it
    path: str  # /enrol#token=…


def serve(base: Path, **settings: Any) -> Iterator[WebServer]:
    """A uvicorn server for a fresh deployment under `base` (a generator: use in a fixture)."""
    port = free_port()
    dep = new_deployment(base, public_url=f"http://localhost:{port}", port=port, **settings)
    limiter = fast_limiter()
    limiter.limits["mfa:account"] = Limit(1000, 300.0)
    app = create_app(dep, limiter=limiter)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield WebServer(dep, port, server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        dep.close()


@pytest.fixture(scope="module")
def web(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    settings = getattr(request.module, "WEB_SETTINGS", {})
    yield from serve(tmp_path_factory.mktemp("web"), **settings)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, web: WebServer) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, base_url=web.origin)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"the page raised errors or broke its CSP: {errors}"


def virtual_authenticator(page: Any) -> Any:
    """Chromium's virtual platform authenticator (CTAP2, resident keys, user verified)."""
    cdp = page.context.new_cdp_session(page)
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
    return cdp


def _org_id(web: WebServer, org: str) -> Any:
    with web.dep.db.session() as s:
        row = s.scalar(select(Organisation).where(Organisation.name == org))
        if row is None:
            row = admin.create_organisation(s, system_actor(), org)
            s.commit()
        return row.id


def enrolled_user(web: WebServer, org: str | None, roles: list[str], **kwargs: Any) -> User:
    """An account with a verified TOTP second factor and ten recovery codes."""
    user_id, org_id, email, password, secret, codes = create_user(web.dep, org, roles, **kwargs)
    return User(user_id, org_id, email, password, secret, list(roles), codes)


def invite(web: WebServer, org: str | None, roles: list[str], email: str) -> Invitation:
    """An invitation made by the real service (as the CLI does: audited as `cli`); `org=None`
    with roles ["platform_admin"] is the bootstrap link."""
    with web.dep.db.session() as s:
        if org is None:
            new = accounts.bootstrap(s, email)
        else:
            org_id = _org_id(web, org)
            new = accounts.create_invitation(
                s, system_actor(), org_id=org_id, email=email, roles=roles
            )
            s.commit()
        token = new.token
    link = accounts.enrolment_link(web.dep.settings, token)
    return Invitation(email, token, link, link.removeprefix(web.origin))


def sign_in(page: Any, web: WebServer, user: User, *, path: str = "/signin") -> None:
    """Email and password, then a TOTP code (the next step's code when this one was used)."""
    page.goto(web.url(path))
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Continue").click()
    code = page.get_by_label("Code from your authenticator app")
    signed_in = page.get_by_role("button", name="Sign out", exact=True)
    refused = page.locator("form[aria-label='Second factor'] .form-error:not([hidden])")
    for offset in (0, 1, 2):
        code.fill(user.code(offset))
        page.get_by_role("button", name="Verify").click()
        signed_in.or_(refused).first.wait_for(timeout=20_000)
        if signed_in.is_visible():
            return
        # the code of this step was spent by an earlier sign-in: the next one
    raise AssertionError("could not sign in: " + page.inner_text("main"))


def assert_no_serious_axe_violations(page: Any, *, include: str | None = None) -> None:
    """axe-core on the page as it is now: no violation of impact serious or critical."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text())  # evaluated over CDP: the page's CSP is untouched
    result = page.evaluate(
        "async (ctx) => await axe.run(ctx || document, {resultTypes: ['violations']})", include
    )
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    summary = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in bad
    ]
    assert not bad, "axe-core violations: " + json.dumps(summary, indent=1)


def screenshots(page: Any, name: str, *, full_page: bool = True) -> list[Path]:
    """The screen as it is now at 360 px and 1280 px wide (then back to the desktop size)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    height = page.viewport_size["height"] if page.viewport_size else DESKTOP["height"]
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 740 if width < 600 else height})
        page.wait_for_timeout(150)
        path = SCREENSHOTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        saved.append(path)
    page.set_viewport_size(DESKTOP)
    return saved


def check_screen(page: Any, name: str) -> None:
    """axe-core at both widths (the phone layout differs), then the screenshots."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 740 if width < 600 else 800})
        page.wait_for_timeout(100)
        assert_no_serious_axe_violations(page)
    screenshots(page, name)
