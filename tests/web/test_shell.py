"""The shell: served from the API's origin with a strict CSP and no inline script; every screen
path answers the one page; static files stay inside their folder; the sign-in screen (password,
then second factor) in real Chromium."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

from facesearch.api.app import CSP
from facesearch.security import sessions
from facesearch.web import SCREENS, STATIC_DIR
from tests.web.conftest import (
    WebServer,
    check_screen,
    enrolled_user,
    sign_in,
)


def fetch(web: WebServer, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(web.url(path), timeout=10) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_the_page_has_a_strict_csp_and_no_inline_script_or_style(web: WebServer) -> None:
    status, headers, body = fetch(web, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert csp == CSP
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = body.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts, "the page loads its application module"
    for attrs, content in scripts:
        assert 'src="/static/' in attrs and not content.strip(), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html) and "<style" not in html, "inline style"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "something from another origin"


def test_every_static_file_is_free_of_inline_styles_and_remote_urls() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.suffix not in (".html", ".js") or "vendor" in path.parts:
            continue
        text = path.read_text()
        assert "innerHTML" not in text, f"{path.name}: innerHTML (build elements instead)"
        assert 'setAttribute("style"' not in text and "style=" not in text.replace(
            "getComputedStyle", ""
        ), f"{path.name}: an inline style attribute"
        assert not re.search(r"\bhttps?://(?!localhost)", text), f"{path.name}: a remote URL"
        assert "eval(" not in text, path.name


def test_screen_paths_answer_the_page_and_the_api_keeps_its_own(web: WebServer) -> None:
    _, _, index = fetch(web, "/")
    for name in SCREENS:
        status, _, body = fetch(web, f"/{name}")
        assert status == 200 and body == index, name
    status, _, body = fetch(web, "/cases/some-opaque-id")
    assert status == 200 and body == index
    # the API still answers JSON for its own paths, and unknown paths are not the page
    status, headers, _ = fetch(web, "/api/v1/me")
    assert status == 401 and headers["content-type"].startswith("application/json")
    assert fetch(web, "/api/v1/no-such-thing")[0] == 404
    assert fetch(web, "/no-such-screen")[0] == 404


def test_static_files_stay_inside_their_folder(web: WebServer) -> None:
    status, headers, _ = fetch(web, "/static/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert headers["x-content-type-options"] == "nosniff"
    for bad in (
        "/static/../__init__.py",
        "/static/%2e%2e/__init__.py",
        "/static/..%2f__init__.py",
        "/static/screens",
        "/static/.hidden",
        "/static/",
    ):
        assert fetch(web, bad)[0] == 404, bad
    assert fetch(web, "/sw.js")[1].get("service-worker-allowed") == "/"
    status, headers, _ = fetch(web, "/manifest.webmanifest")
    assert status == 200 and headers["content-type"].startswith("application/manifest+json")


def test_sign_in_with_a_code_then_sign_out(web: WebServer, page: Any) -> None:
    user = enrolled_user(web, "Shell Org", ["investigator", "reviewer"])
    page.goto(web.url("/account"))
    # not signed in: the sign-in screen, remembering where the person wanted to go
    page.wait_for_url(re.compile(r"/signin\?next=%2Faccount"))
    check_screen(page, "signin")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Continue").click()
    assert "wrong" in page.get_by_role("alert").inner_text().lower() or "invalid" in (
        page.get_by_role("alert").inner_text().lower()
    )
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Code from your authenticator app").wait_for()
    check_screen(page, "signin-second-factor")
    page.get_by_label("Code from your authenticator app").fill(user.code())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(web.url("/account"))
    header = page.locator("header")
    assert "Shell Org" in header.inner_text()
    assert "Investigator" in header.inner_text() and "Reviewer" in header.inner_text()
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile("/signin"))
    assert page.request.get(web.url("/api/v1/me")).status == 401


def test_the_recovery_code_path(web: WebServer, page: Any) -> None:
    user = enrolled_user(web, "Shell Org", ["auditor"])
    page.goto(web.url("/signin"))
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Use a recovery code instead").click()
    page.get_by_label("Recovery code").fill(user.recovery_codes[0])
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("button", name="Sign out", exact=True).wait_for()
    assert "9 left" in page.locator("#notices").inner_text()
    # sign_in helper: works for the next test modules too
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile("/signin"))
    sign_in(page, web, user)


def test_the_service_worker_caches_the_shell_and_never_the_api(web: WebServer, page: Any) -> None:
    user = enrolled_user(web, "Shell Org", ["investigator"])
    sign_in(page, web, user)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.reload()  # now the worker controls the page
    assert page.evaluate("!!navigator.serviceWorker.controller")
    page.goto(web.url("/account"))  # a screen that asks the API for a lot
    page.get_by_role("heading", name="Sessions").wait_for()
    page.get_by_role("cell", name=re.compile("this session")).wait_for()
    assert page.evaluate("fetch('/api/v1/me').then(r => r.status)") == 200
    cached = page.evaluate(
        """async () => {
            const out = [];
            for (const name of await caches.keys()) {
                const cache = await caches.open(name);
                for (const request of await cache.keys()) out.push(new URL(request.url).pathname);
            }
            return out;
        }"""
    )
    assert "/static/app.js" in cached and "/static/screens/account.js" in cached
    assert "/" in cached  # the page itself, for every screen path
    assert not [p for p in cached if p.startswith("/api/")], cached
    assert all(p == "/" or p.startswith("/static/") or p == "/manifest.webmanifest" for p in cached)
    # offline, the shell still opens (from the cache) and says the server cannot be reached
    page.context.set_offline(True)
    try:
        page.reload()
        page.locator("main").get_by_text("cannot be reached").wait_for()
    finally:
        page.context.set_offline(False)


def test_keyboard_only_sign_in_with_visible_focus_and_the_phone_menu(
    web: WebServer, page: Any
) -> None:
    user = enrolled_user(web, "Shell Org", ["auditor"])
    page.goto(web.url("/signin"))
    page.get_by_label("Email").wait_for()
    focused = "document.activeElement && document.activeElement.name"
    assert page.evaluate(focused) == "email"  # focus starts in the first field
    page.keyboard.type(user.email)
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "password"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focused field shows its focus"
    page.keyboard.type(user.password)
    page.keyboard.press("Enter")
    page.get_by_label("Code from your authenticator app").wait_for()
    assert page.evaluate(focused) == "code"
    page.keyboard.type(user.code())
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Sign out", exact=True).wait_for()
    # on a phone the navigation folds into a menu button that opens from the keyboard
    page.set_viewport_size({"width": 360, "height": 740})
    menu = page.get_by_role("button", name="Menu")
    nav = page.get_by_role("navigation", name="Main")
    assert not nav.get_by_role("link", name="Audit").is_visible()
    menu.focus()
    page.keyboard.press("Enter")
    assert menu.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Home"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Cases"  # casework's
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Audit"
    page.keyboard.press("Enter")
    page.wait_for_url(web.url("/audit"))
    page.get_by_role("heading", name="Audit", exact=True).wait_for()


def test_a_session_ended_elsewhere_returns_to_sign_in_and_back(web: WebServer, page: Any) -> None:
    user = enrolled_user(web, "Shell Org", ["auditor"])
    sign_in(page, web, user)
    # the person signs out everywhere from another device: this page's session is gone
    with web.dep.db.session() as s:
        assert sessions.revoke_all(s, user.user_id) >= 1
        s.commit()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.wait_for_url(re.compile(r"/signin\?reason=expired&next=%2Faudit"))
    page.locator("#notices").get_by_text("Your session has ended").wait_for()
    sign_in(page, web, user, path=page.url.removeprefix(web.origin))
    page.wait_for_url(web.url("/audit"))


def test_the_enrolment_page_without_a_token_says_what_to_do(web: WebServer, page: Any) -> None:
    page.goto(web.url("/enrol"))
    page.get_by_text("needs the enrolment link").wait_for()
    assert page.get_by_role("link", name="Sign in").is_visible()
