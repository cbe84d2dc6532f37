"""My account in real Chromium: API keys (created with scopes and an expiry, shown once,
revoked), sessions (listed, one ended, sign out everywhere), password change, new recovery codes,
notices."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import WebServer, check_screen, enrolled_user, sign_in


def test_an_api_key_is_shown_once_and_can_be_revoked(web: WebServer, page: Any) -> None:
    user = enrolled_user(web, "Account Org", ["investigator", "auditor"])
    sign_in(page, web, user)
    page.goto(web.url("/account"))
    page.get_by_role("heading", name="API keys").wait_for()
    keys = page.locator("section").filter(has=page.get_by_role("heading", name="API keys"))
    # the scopes offered are the ones the roles grant
    keys.locator("fieldset label").first.wait_for()  # the keys load after the heading
    labels = keys.locator("fieldset label").all_inner_texts()
    assert sorted(labels) == ["Audit", "Search"]
    keys.get_by_label("Name").fill("nightly report")
    keys.get_by_label("Search").check()
    keys.get_by_label("Expires in (days)").fill("7")
    keys.get_by_role("button", name="Create key").click()
    secret = keys.get_by_label('API key "nightly report"')
    secret.wait_for()
    key = secret.inner_text().strip()
    assert key.startswith("fsk_")
    check_screen(page, "account")
    # the key works for a program, with its scope
    reply = page.request.get(
        web.url("/api/v1/collections"), headers={"Authorization": f"Bearer {key}"}
    )
    assert reply.status == 200
    row = keys.get_by_role("row").filter(has_text="nightly report")
    expect(row).to_contain_text("Search")
    expect(row).to_contain_text("active")
    # shown once: after a reload only its prefix is there
    page.reload()
    page.get_by_role("heading", name="API keys").wait_for()
    expect(row).to_be_visible()
    assert key not in page.content()
    # a notice about the new key
    expect(page.locator("section").filter(has_text="Notices")).to_contain_text("key")
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    reply = page.request.get(
        web.url("/api/v1/collections"), headers={"Authorization": f"Bearer {key}"}
    )
    assert reply.status == 401


def test_sessions_password_and_recovery_codes(web: WebServer, page: Any, browser: Any) -> None:
    user = enrolled_user(web, "Account Org", ["reviewer"])
    # another session of the same person, in another browser context
    other = browser.new_context(base_url=web.origin)
    other_page = other.new_page()
    try:
        sign_in(other_page, web, user)
        sign_in(page, web, user)
        page.goto(web.url("/account"))
        sessions = page.locator("section").filter(has=page.get_by_role("heading", name="Sessions"))
        rows = sessions.get_by_role("row")
        expect(rows).to_have_count(3)  # header + two sessions
        sessions.get_by_role("row").filter(has_not_text="this session").get_by_role(
            "button", name="End"
        ).click()
        expect(rows).to_have_count(2)
        assert other_page.request.get(web.url("/api/v1/me")).status == 401

        # new recovery codes (the session is fresh: no prompt)
        page.get_by_role("button", name="New recovery codes").click()
        page.get_by_role("dialog").get_by_role("button", name="Make new codes").click()
        codes = page.get_by_label("Your recovery codes").inner_text().split()
        assert len(codes) == 10
        page.get_by_role("button", name="I have saved them").click()

        # password change: a wrong current password is refused, and the person stays here
        form = page.get_by_role("form", name="Change password")
        form.get_by_label("Current password").fill("not my password")
        form.get_by_label("New password", exact=True).fill("a brand new passphrase")
        form.get_by_label("New password again").fill("a brand new passphrase")
        form.get_by_role("button", name="Change password").click()
        expect(form.get_by_role("alert")).to_be_visible()
        assert page.url == web.url("/account")
        form.get_by_label("Current password").fill(user.password)
        form.get_by_label("New password", exact=True).fill("a brand new passphrase")
        form.get_by_label("New password again").fill("a brand new passphrase")
        form.get_by_role("button", name="Change password").click()
        expect(page.locator("#notices")).to_contain_text("Password changed")
        user.password = "a brand new passphrase"

        # sign out everywhere
        page.get_by_role("button", name="Sign out everywhere").click()
        page.get_by_role("dialog").get_by_role("button", name="Sign out everywhere").click()
        page.wait_for_url(re.compile("/signin"))
        assert page.request.get(web.url("/api/v1/me")).status == 401
        # the new password and a new recovery code sign in
        page.get_by_label("Email").fill(user.email)
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="Use a recovery code instead").click()
        page.get_by_label("Recovery code").fill(codes[0])
        page.get_by_role("button", name="Verify").click()
        page.get_by_role("button", name="Sign out", exact=True).wait_for()
    finally:
        other.close()
