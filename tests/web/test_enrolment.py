"""Enrolment in real Chromium: from an invitation link and from the bootstrap link, a password,
the choice of the second factor, TOTP from the QR code's secret (codes from pyotp), recovery codes
shown once behind "I have saved them", sign-in with the second factor; a passkey added after TOTP
at enrolment; and a passkey as the *only* second factor (Chromium's virtual authenticator), then
password + passkey at sign-in, TOTP added later under My account."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import select

from facesearch.store.accounts import User as UserRow
from facesearch.store.audit import AuditEntry
from tests.web.conftest import (
    User,
    WebServer,
    check_screen,
    invite,
    sign_in,
    totp_code,
    virtual_authenticator,
)

PASSWORD = "correct horse battery staple"


def enrol_until_totp(page: Any, web: WebServer, path: str, name: str, *, shots: bool) -> str:
    """Open the link, set a password, read the TOTP secret; returns the secret."""
    page.goto(web.url(path))
    page.get_by_label("New password", exact=True).wait_for()
    # the one-time token does not stay in the address bar (nor in the history)
    assert "token" not in page.url
    if shots:
        check_screen(page, "enrol-password")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("New password", exact=True).fill("too short")
    page.get_by_label("New password again").fill("too short")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.get_by_role("heading", name="Choose your second factor").wait_for()
    if shots:
        check_screen(page, "enrol-choose")
    page.get_by_role("button", name="Use an authenticator app").click()
    qr = page.get_by_role("img", name=re.compile("QR code"))
    qr.wait_for()
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert page.evaluate("document.querySelector('img.qr').naturalWidth") > 0, "the QR is drawn"
    page.get_by_text("Cannot scan?").click()
    secret = page.locator("[data-secret=totp]").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    if shots:
        check_screen(page, "enrol-totp")
    return secret


def confirm_totp_and_codes(page: Any, secret: str, *, shots: bool) -> list[str]:
    page.get_by_label("The six-digit code your app shows now").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    page.get_by_label("The six-digit code your app shows now").fill(totp_code(secret))
    page.get_by_role("button", name="Verify").click()
    codes_box = page.get_by_label("Your recovery codes")
    codes_box.wait_for()
    codes = codes_box.inner_text().split()
    assert len(codes) == 10 and len(set(codes)) == 10
    if shots:
        check_screen(page, "enrol-recovery-codes")
    # the codes must be acknowledged before going on
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    page.get_by_label("I have saved these recovery codes").check()
    page.get_by_role("button", name="Continue").click()
    return codes


def test_an_invited_user_enrols_totp_and_signs_in(web: WebServer, page: Any) -> None:
    inv = invite(web, "Enrol Org", ["investigator"], "ines@enrol.test")
    assert inv.link == f"{web.origin}/enrol#token={inv.token}"
    secret = enrol_until_totp(page, web, inv.path, "Inès Investigator", shots=True)
    codes = confirm_totp_and_codes(page, secret, shots=True)
    page.get_by_role("button", name="Not now").click()
    page.get_by_role("heading", name="Welcome, Inès Investigator").wait_for()
    assert "Enrol Org" in page.locator("header").inner_text()
    check_screen(page, "home")
    # the link is spent
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.goto(web.url(inv.path))
    page.get_by_label("New password", exact=True).fill(PASSWORD + "!")
    page.get_by_label("New password again").fill(PASSWORD + "!")
    page.get_by_role("button", name="Set password").click()
    assert "invalid, used, revoked or expired" in page.get_by_role("alert").first.inner_text()
    # and the account signs in with its password and a code of the enrolled secret
    user = User(None, None, inv.email, PASSWORD, secret, ["investigator"], codes)
    sign_in(page, web, user)
    me = page.request.get(web.url("/api/v1/me")).json()
    assert me["email"] == inv.email and me["mfa_enrolled"] is True
    with web.dep.db.session() as s:
        actions = set(s.scalars(select(AuditEntry.action)))
    assert {"invitation.used", "mfa.enrolled"} <= actions


def test_the_bootstrap_link_enrols_the_platform_administrator(web: WebServer, page: Any) -> None:
    inv = invite(web, None, ["platform_admin"], "root@platform.test")
    secret = enrol_until_totp(page, web, inv.path, "", shots=False)
    confirm_totp_and_codes(page, secret, shots=False)
    page.get_by_role("button", name="Not now").click()
    page.get_by_role("heading", name=re.compile("Welcome")).wait_for()
    header = page.locator("header").inner_text()
    assert "Platform administrator" in header
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration")
    ).to_be_visible()


def test_a_passkey_enrolled_with_the_account_signs_in(web: WebServer, page: Any) -> None:
    virtual_authenticator(page)
    inv = invite(web, "Enrol Org", ["reviewer"], "pat@enrol.test")
    secret = enrol_until_totp(page, web, inv.path, "Pat Passkey", shots=False)
    confirm_totp_and_codes(page, secret, shots=False)
    check_screen(page, "enrol-passkey")
    page.get_by_label("A name for this passkey").fill("test laptop")
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_role("heading", name="Welcome, Pat Passkey").wait_for()
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile("/signin"))

    page.get_by_label("Email").fill(inv.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.get_by_role("heading", name="Welcome, Pat Passkey").wait_for()
    with web.dep.db.session() as s:
        verified = s.scalars(select(AuditEntry).where(AuditEntry.action == "mfa.verified")).all()
    assert any((e.details or {}).get("method") == "passkey" for e in verified)
    page.goto(web.url("/account"))
    page.get_by_role("cell", name=re.compile("test laptop")).wait_for()
    # removed under My account: the next sign-in needs a code again
    page.get_by_role("row").filter(has_text="test laptop").get_by_role(
        "button", name="Remove"
    ).click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    page.get_by_text("No passkey yet.").wait_for()
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_label("Email").fill(inv.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Code from your authenticator app").wait_for()
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_have_count(0)


def test_an_invited_user_enrols_with_only_a_passkey(web: WebServer, page: Any) -> None:
    virtual_authenticator(page)
    inv = invite(web, "Enrol Org", ["investigator"], "quinn@enrol.test")
    page.goto(web.url(inv.path))
    page.get_by_label("Your name").fill("Quinn Passkey")
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.get_by_role("heading", name="Choose your second factor").wait_for()
    # a look at the authenticator app first, then back to the choice
    page.get_by_role("button", name="Use an authenticator app").click()
    page.get_by_role("img", name=re.compile("QR code")).wait_for()
    page.get_by_role("button", name="Use a passkey instead").click()
    page.get_by_label("A name for this passkey").fill("quinn's laptop")
    page.get_by_role("button", name="Use a passkey").click()
    codes_box = page.get_by_label("Your recovery codes")
    codes_box.wait_for()
    codes = codes_box.inner_text().split()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert "lose your passkey" in page.locator("main").inner_text()
    page.get_by_label("I have saved these recovery codes").check()
    page.get_by_role("button", name="Continue").click()
    # no TOTP was set up, and no second passkey is offered: straight in
    page.get_by_role("heading", name="Welcome, Quinn Passkey").wait_for()
    me = page.request.get(web.url("/api/v1/me")).json()
    assert me["second_factors"] == ["passkey"] and me["recovery_codes_remaining"] == 10
    with web.dep.db.session() as s:  # the authenticator secret looked at is not kept
        row = s.scalar(select(UserRow).where(UserRow.email == inv.email))
        assert row is not None and row.totp_secret is None and row.totp_verified_at is None
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile("/signin"))

    # password, then the passkey: no code is asked for
    page.get_by_label("Email").fill(inv.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    passkey = page.get_by_role("button", name="Sign in with a passkey")
    passkey.wait_for()
    expect(page.get_by_label("Code from your authenticator app")).to_have_count(0)
    expect(page.get_by_role("textbox", name="Recovery code")).to_be_visible()
    check_screen(page, "signin-passkey")
    passkey.click()
    page.get_by_role("heading", name="Welcome, Quinn Passkey").wait_for()
    with web.dep.db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action.like("mfa.%"))).all()
    by_action = {e.action: e.details or {} for e in rows}
    assert by_action["mfa.enrolled"]["method"] == "passkey"
    assert by_action["mfa.verified"]["method"] == "passkey"

    # My account: the only passkey cannot be removed; an authenticator app can be added
    page.goto(web.url("/account"))
    page.get_by_role("cell", name=re.compile("quinn's laptop")).wait_for()
    check_screen(page, "account-passkey-only")
    page.get_by_role("row").filter(has_text="quinn's laptop").get_by_role(
        "button", name="Remove"
    ).click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    expect(page.get_by_text(re.compile("only second factor"))).to_be_visible()
    page.get_by_role("button", name="Add an authenticator app").click()
    page.get_by_text("Cannot scan?").click()
    secret = page.locator("code.secret-inline").inner_text().strip()
    page.get_by_label("Code from the new app").fill(totp_code(secret))
    page.get_by_role("button", name="Confirm").click()
    page.get_by_label("Your recovery codes").wait_for()
    page.get_by_role("button", name="I have saved them").click()
    expect(page.locator("dd").filter(has_text="Authenticator app, Passkey")).to_be_visible()
