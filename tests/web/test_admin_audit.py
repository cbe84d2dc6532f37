"""Administration and audit in real Chromium: an organisation administrator manages users,
their API keys (revoked with a reason) and invitations (re-authenticating when the API asks),
the platform administrator creates organisations, a non-administrator cannot reach
administration (hidden in the UI, refused by the API), and an auditor sees the log, its filters,
the chain's status and the activity charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from playwright.sync_api import expect

from facesearch import clock
from facesearch.security import api_keys
from facesearch.store.accounts import User as UserRow
from tests.api.conftest import api_id
from tests.web.conftest import (
    WebServer,
    check_screen,
    enrolled_user,
    invite,
    sign_in,
)


def test_an_organisation_administrator_manages_users_and_invitations(
    web: WebServer, page: Any
) -> None:
    admin = enrolled_user(web, "Admin Org", ["org_admin"])
    worker = enrolled_user(web, "Admin Org", ["investigator"])
    sign_in(page, web, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Administration").click()
    page.get_by_role("heading", name="Administration: users").wait_for()
    row = page.get_by_role("row").filter(has_text=worker.email)
    expect(row).to_contain_text("Investigator")
    check_screen(page, "admin-users")

    # a locked account (as repeated failures leave it) is unlocked
    with web.dep.db.session() as s:
        locked = s.get(UserRow, worker.user_id)
        assert locked is not None
        locked.locked_until = clock.now() + timedelta(hours=1)
        s.commit()
    page.reload()
    expect(row).to_contain_text("locked")
    page.get_by_role("button", name=f"Unlock {worker.email}").click()
    expect(page.locator("#notices")).to_contain_text(f"{worker.email} unlocked")
    expect(row).not_to_contain_text("locked")

    # roles: add reviewer
    page.get_by_role("button", name=f"Roles of {worker.email}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reviewer").check()
    dialog.get_by_role("button", name="Save roles").click()
    expect(row).to_contain_text("Reviewer")

    # a password reset link, shown once
    page.get_by_role("button", name=f"Reset password of {worker.email}").click()
    page.get_by_role("dialog").get_by_role("button", name="Create link").click()
    link = page.get_by_label("Reset link", exact=True).inner_text()
    assert re.fullmatch(rf"{re.escape(web.origin)}/reset#token=[\w-]+", link), link
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    # the user opens it and sets a new password (in their own browser)
    theirs = page.context.browser.new_context(base_url=web.origin)
    try:
        them = theirs.new_page()
        them.goto(link)
        them.get_by_label("New password", exact=True).fill("the reset passphrase")
        them.get_by_label("New password again").fill("the reset passphrase")
        assert "token" not in them.url
        check_screen(them, "reset")
        them.get_by_role("button", name="Set password").click()
        them.wait_for_url(re.compile("/signin"))
        expect(them.locator("#notices")).to_contain_text("Your password is set")
        worker.password = "the reset passphrase"
        sign_in(them, web, worker)
    finally:
        theirs.close()

    # invitations: the session is no longer fresh, so the API asks to re-authenticate first
    page.get_by_role("link", name="Invitations").click()
    page.get_by_role("heading", name="Administration: invitations").wait_for()
    later = datetime.now(UTC) + timedelta(minutes=web.dep.settings.reauth_minutes + 1)
    clock.set_clock(lambda: later)
    try:
        page.get_by_label("Email").fill("newcomer@admin-org.test")
        page.get_by_label("Auditor").check()
        page.get_by_role("button", name="Create invitation").click()
        dialog = page.get_by_role("dialog", name="Confirm it is you")
        dialog.get_by_label("Password").fill(admin.password)
        code = pyotp.TOTP(admin.totp_secret).at(later.timestamp())
        dialog.get_by_label(re.compile("Code from your authenticator")).fill(str(code))
        check_screen(page, "reauth")
        dialog.get_by_role("button", name="Confirm").click()
        box = page.get_by_label("Enrolment link for newcomer@admin-org.test")
        box.wait_for()
        assert "/enrol#token=" in box.inner_text()
        check_screen(page, "admin-invitations")
        row = page.get_by_role("row").filter(has_text="newcomer@admin-org.test")
        expect(row).to_contain_text("pending")
        page.get_by_role("button", name="Revoke the invitation of newcomer@admin-org.test").click()
        page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
        expect(row).to_contain_text("revoked")
    finally:
        clock.set_clock(None)

    # disable the user
    page.get_by_role("link", name="Users").click()
    page.get_by_role("button", name=f"Disable {worker.email}").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    expect(page.get_by_role("row").filter(has_text=worker.email)).to_contain_text("disabled")


def test_an_organisation_administrator_revokes_a_users_api_key(web: WebServer, page: Any) -> None:
    admin = enrolled_user(web, "Keys Org", ["org_admin"])
    worker = enrolled_user(web, "Keys Org", ["investigator"], email="kim@keys-org.test")
    outsider = enrolled_user(web, "Other Org", ["investigator"])
    with web.dep.db.session() as s:
        owner = s.get(UserRow, worker.user_id)
        stranger = s.get(UserRow, outsider.user_id)
        assert owner is not None and stranger is not None
        secret = api_keys.create(s, owner, name="nightly export", scopes=["search"], days=30).key
        api_keys.create(s, owner, name="old laptop", scopes=["search"], days=7)
        api_keys.create(s, stranger, name="other org script", scopes=["search"], days=30)
        s.commit()
    program = {"Authorization": f"Bearer {secret}"}
    assert page.request.get(web.url("/api/v1/me"), headers=program).status == 200
    sign_in(page, web, admin)
    page.goto(web.url("/admin/users"))
    page.get_by_role("navigation", name="Administration").get_by_role(
        "link", name="API keys"
    ).click()
    page.get_by_role("heading", name="Administration: API keys").wait_for()
    row = page.get_by_role("row").filter(has_text="nightly export")
    expect(row).to_contain_text("kim@keys-org.test")
    expect(row).to_contain_text("Search")
    expect(row).to_contain_text("active")
    main = page.locator("main").inner_text()
    assert "other org script" not in main and secret not in main
    check_screen(page, "admin-api-keys")
    page.get_by_role("button", name="Revoke the key nightly export of kim@keys-org.test").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reason").fill("the export server was decommissioned")
    check_screen(page, "admin-api-key-revoke")
    dialog.get_by_label("Reason").fill("")
    dialog.get_by_role("button", name="Revoke key").click()
    expect(dialog.get_by_role("alert").first).to_be_visible()  # a reason is required
    dialog.get_by_label("Reason").fill("the export server was decommissioned")
    dialog.get_by_role("button", name="Revoke key").click()
    expect(page.locator("#notices")).to_contain_text("revoked")
    expect(row).to_contain_text("revoked")
    expect(page.get_by_role("row").filter(has_text="old laptop")).to_contain_text("active")
    assert page.request.get(web.url("/api/v1/me"), headers=program).status == 401


def test_the_platform_administrator_creates_organisations(web: WebServer, page: Any) -> None:
    root = enrolled_user(web, None, ["platform_admin"])
    sign_in(page, web, root)
    page.goto(web.url("/admin"))
    page.get_by_role("heading", name="Administration: organisations").wait_for()
    page.get_by_label("Name").fill("Harbour Police")
    page.get_by_role("button", name="Create organisation").click()
    expect(page.get_by_role("row").filter(has_text="Harbour Police")).to_be_visible()
    check_screen(page, "admin-organisations")
    page.get_by_role("link", name="Invitations").click()
    page.get_by_label("Email").fill("chief@harbour.test")
    page.get_by_label("Organisation").select_option(label="Harbour Police")
    page.get_by_role("button", name="Create invitation").click()
    page.get_by_label("Enrolment link for chief@harbour.test").wait_for()
    expect(page.get_by_role("row").filter(has_text="chief@harbour.test")).to_contain_text(
        "Organisation administrator"
    )


def test_a_non_administrator_cannot_reach_administration(web: WebServer, page: Any) -> None:
    user = enrolled_user(web, "Admin Org", ["investigator", "reviewer"])
    sign_in(page, web, user)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Home")).to_be_visible()
    assert nav.get_by_role("link", name="Administration").count() == 0
    assert nav.get_by_role("link", name="Audit").count() == 0
    page.goto(web.url("/admin/users"))
    page.get_by_role("heading", name="Not allowed").wait_for()
    check_screen(page, "not-allowed")
    # and the API refuses, whatever the page shows
    for path in (
        "/api/v1/users",
        "/api/v1/api-keys",
        "/api/v1/invitations",
        "/api/v1/organisations",
        "/api/v1/audit/chain",
    ):
        assert page.request.get(web.url(path)).status == 403, path


def test_an_auditor_sees_the_log_the_chain_and_the_activity(web: WebServer, page: Any) -> None:
    auditor = enrolled_user(web, "Audit Org", ["auditor"])
    someone = enrolled_user(web, "Audit Org", ["investigator"])
    invite(web, "Audit Org", ["reviewer"], "rae@audit-org.test")
    # someone signs in (an entry of theirs in the log)
    sign_in(page, web, someone)
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile("/signin"))
    sign_in(page, web, auditor)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    chain = page.locator("[data-chain]")
    chain.wait_for()
    assert chain.get_attribute("data-chain") == "ok"
    expect(chain).to_contain_text("Verified")
    page.locator(".chart canvas").first.wait_for()
    assert page.locator(".chart canvas").count() == 2
    table = page.get_by_role("table").filter(has_text="newest first")
    expect(table).to_contain_text("auth.signin")
    check_screen(page, "audit")
    # filter by user: only their entries
    page.get_by_label("User", exact=True).select_option(label=someone.email)
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_role("table").filter(has_text="newest first")).not_to_contain_text(
        auditor.email
    )
    who = page.locator("table.table").last.locator("td[data-label=Who]").all_inner_texts()
    assert who and set(who) == {someone.email}
    # a person by name (else email), the opaque id kept as the tooltip for the auditor
    first = page.locator("table.table").last.locator("td[data-label=Who] .person").first
    assert first.get_attribute("title") == f"user id {api_id(web.dep, 'user', someone.user_id)}"
    # filter by action
    page.get_by_label("User", exact=True).select_option(label="Anyone")
    page.get_by_label("Action", exact=True).fill("invitation.created")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("caption").last).to_contain_text("1 matching entry")
