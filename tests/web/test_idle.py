"""The idle timeout in real Chromium: with `session_idle_minutes = 1`, the page warns before the
session ends, "Stay signed in" keeps it, and without activity the person is sent to sign-in
(the session is ended on the server too). The page's clock is Playwright's, fast-forwarded."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import WebServer, check_screen, enrolled_user, sign_in

WEB_SETTINGS = {"session_idle_minutes": 1}


def test_the_idle_timeout_warns_then_returns_to_sign_in(web: WebServer, page: Any) -> None:
    user = enrolled_user(web, "Idle Org", ["investigator"])
    page.clock.install()
    sign_in(page, web, user)
    assert page.request.get(web.url("/api/v1/me")).json()["session_idle_minutes"] == 1
    warning = page.get_by_role("dialog", name="Still there?")
    page.clock.fast_forward(30_000)
    expect(warning).to_have_count(0)
    page.clock.fast_forward(20_000)  # 50 s: within the last 15 s before the end
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Your session ends in 15 seconds")
    check_screen(page, "idle-warning")
    warning.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_have_count(0)
    # a request restarted the timer: nothing happens for another 40 s
    page.clock.fast_forward(40_000)
    expect(warning).to_have_count(0)
    page.clock.fast_forward(10_000)
    expect(warning).to_be_visible()
    page.clock.fast_forward(20_000)
    page.wait_for_url(re.compile(r"/signin\?reason=idle"))
    expect(page.locator("#notices")).to_contain_text("Your session ended after 1 minute")
    page.get_by_label("Email").wait_for()
    assert page.request.get(web.url("/api/v1/me")).status == 401
