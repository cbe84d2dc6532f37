"""The casework screens in real Chromium against a real server: a search of a multi-face photo,
picking the second face, finds that person in an ingested gallery; two-person review (one
confirmation is not "confirmed", two independent ones are) shown in the case; the case report
(PDF and print); another organisation's case URL is "not found"; an upload of 20 files (some not
images, corrupt or too small) with live progress and the rejected files with their reasons;
axe-core on every screen and screenshots at 360 and 1280 px."""

from __future__ import annotations

import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from facesearch.gallery.collections import create_collection
from facesearch.search import casework
from facesearch.search.engine import SearchEngine
from facesearch.security.actor import SystemActor
from facesearch.store.accounts import User as UserRow
from facesearch.store.casework import Lead
from tests.api.casework_world import LEGAL, PURPOSE, people_gallery, two_people_probe
from tests.api.conftest import api_id, db_id
from tests.conftest import faces_dir, ingest
from tests.web.conftest import (
    SCREENSHOTS,
    WIDTHS,
    User,
    WebServer,
    check_screen,
    enrolled_user,
    sign_in,
)

FORBIDDEN_WORDS = ("identified", "match found")
SEARCHER, REVIEWER, OUTSIDER = "Ines Investigator", "Rita Reviewer", "Otto Outsider"


@dataclass
class World:
    investigator: User
    reviewer1: User
    reviewer2: User
    admin: User
    outsider: User  # an investigator of organisation B
    collection_id: Any
    probe: bytes
    expected: list[str]


def actor(user: User) -> SystemActor:
    return SystemActor(user_id=user.user_id, org_id=user.org_id, api_key_id=None, ip="127.0.0.1")


@pytest.fixture(scope="module")
def world(web: WebServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    investigator = enrolled_user(web, "Casework A", ["investigator"])
    admin_user = enrolled_user(web, "Casework A", ["org_admin"])
    with web.dep.db.session() as s:
        made = create_collection(
            web.dep,
            s,
            actor(admin_user),
            name="custody",
            legal_basis=LEGAL,
            retention_days=365,
        )
    collection_id = made["id"]
    ingest(web.dep, int(collection_id), people_gallery(tmp_path_factory.mktemp("people")))
    probe, expected = two_people_probe()
    reviewer1 = enrolled_user(web, "Casework A", ["reviewer"])
    outsider = enrolled_user(web, "Casework B", ["investigator", "reviewer"])
    with web.dep.db.session() as s:  # people are named on the case screens by these
        for user, name in ((investigator, SEARCHER), (reviewer1, REVIEWER), (outsider, OUTSIDER)):
            row = s.get(UserRow, user.user_id)
            assert row is not None
            row.display_name = name
    return World(
        investigator=investigator,
        reviewer1=reviewer1,
        reviewer2=enrolled_user(web, "Casework A", ["reviewer"]),
        admin=admin_user,
        outsider=outsider,
        collection_id=collection_id,
        probe=probe,
        expected=expected,
    )


def no_forbidden_words(page: Any) -> None:
    text = page.inner_text("main").lower()
    for word in FORBIDDEN_WORDS:
        assert word not in text, f"the screen says {word!r}"


def sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/signin"))


def test_search_a_multi_face_photo_picking_the_second_face(
    web: WebServer, world: World, page: Any
) -> None:
    # which person the second face is, by where it lies on the probe (independent of the UI)
    found = SearchEngine(web.dep).detect(world.probe, collection_ids=[int(world.collection_id)])
    assert len(found.faces) == 2
    second = found.faces[1].box
    expected = world.expected[0 if (second[0] + second[2]) / 2 < found.width / 2 else 1]

    sign_in(page, web, world.investigator, path="/search")
    page.wait_for_url(web.url("/search"))
    page.get_by_label("Case number").fill("CW-2026/1")
    page.get_by_label("Purpose").fill(PURPOSE)
    page.get_by_label("Choose a photo").set_input_files(
        {"name": "two-people.jpg", "mimeType": "image/jpeg", "buffer": world.probe}
    )
    page.get_by_text("2 faces found").wait_for()
    assert page.locator("[data-probe] .face-box").count() == 2
    page.get_by_label("Face 2").check()
    assert page.locator(".face-box.chosen").count() == 1
    check_screen(page, "search")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url(re.compile(r"/results/"))
    page.locator("li.candidate").first.wait_for()
    first = page.locator("li.candidate").first
    assert expected in first.inner_text()
    assert "above the threshold" in first.inner_text()
    assert page.locator("li.candidate .sim-threshold").count() >= 1
    assert "leads, not identifications" in page.inner_text("main")
    no_forbidden_words(page)
    # the filters: a similarity above every candidate hides them all
    page.get_by_label("Lowest similarity shown").fill("1")
    assert page.locator("li.candidate").count() == 0
    page.get_by_label("Lowest similarity shown").fill("0")
    assert page.locator("li.candidate").count() >= 1
    check_screen(page, "results")
    # the detail: the source image, the face boxed
    first.get_by_role("button", name=re.compile("Details")).click()
    dialog = page.locator("dialog[open]")
    dialog.locator("img.source-image").wait_for()
    page.wait_for_function(
        "() => document.querySelector('dialog[open] img.source-image').naturalWidth > 0"
    )
    assert dialog.locator(".face-box").count() == 1
    check_screen(page, "result-detail")
    dialog.get_by_role("button", name="Close").click()
    # a reload rebuilds the screen from the stored search (the answer itself is not kept)
    page.reload()
    page.locator("li.candidate").first.wait_for()
    first = page.locator("li.candidate").first
    assert expected in first.inner_text() and "above the threshold" in first.inner_text()
    # the organisation's cases
    page.get_by_role("link", name="Cases", exact=True).click()
    page.get_by_role("link", name="CW-2026/1").wait_for()
    check_screen(page, "cases")


def search_as(web: WebServer, user: User, world: World, case: str) -> tuple[Any, Any]:
    """A search run by the service (as the investigator) and its first candidate's result id."""
    with web.dep.db.session() as s:
        outcome = casework.run_search(
            web.dep,
            s,
            actor(user),
            (faces_dir("small", "barack_obama") / "obama2.jpg").read_bytes(),
            case_number=case,
            purpose=PURPOSE,
            top_k=2,
        )
    result_id = outcome.faces[0].candidates[0].result_id
    assert result_id is not None
    # as the API (and so the page) names them
    return api_id(web.dep, "case", outcome.case_id), api_id(web.dep, "result", result_id)


def status_of(web: WebServer, result_id: Any) -> str:
    with web.dep.db.session() as s:
        row = s.get(Lead, db_id(web.dep, "result", result_id))
        assert row is not None
        return str(row.status)


def review(page: Any, result_id: Any, note: str) -> None:
    card = page.locator(f'li.candidate[data-result-id="{result_id}"]')
    card.wait_for()
    card.get_by_label("Note").fill(note)
    card.get_by_role("button", name="Confirm").click()
    card.wait_for(state="detached")


def test_two_independent_reviewers_confirm_and_the_case_shows_every_decision(
    web: WebServer, world: World, page: Any, tmp_path: Path
) -> None:
    case_id, result_id = search_as(web, world.investigator, world, "CW-2026/2")
    sign_in(page, web, world.reviewer1, path="/review")
    page.wait_for_url(web.url("/review"))
    card = page.locator(f'li.candidate[data-result-id="{result_id}"]')
    card.wait_for()
    assert f"Searched by {SEARCHER}" in card.inner_text() and "CW-2026/2" in card.inner_text()
    no_forbidden_words(page)
    check_screen(page, "review")
    review(page, result_id, "Same ear shape and scar")
    assert "1 of 2" in page.locator("#notices").inner_text()
    assert status_of(web, result_id) == "lead"  # one reviewer does not confirm
    page.goto(web.url(f"/cases/{case_id}"))
    item = page.locator(f'li.candidate[data-result-id="{result_id}"]')
    item.wait_for()
    assert "Awaiting review" in item.inner_text() and "Confirmed by two" not in item.inner_text()
    assert "Same ear shape and scar" in item.inner_text()
    sign_out(page)

    sign_in(page, web, world.reviewer2, path="/review")
    page.wait_for_url(web.url("/review"))
    review(page, result_id, "Agree: same person likely")
    assert "two different reviewers" in page.locator("#notices").inner_text()
    assert status_of(web, result_id) == "confirmed"
    page.goto(web.url(f"/cases/{case_id}"))
    item = page.locator(f'li.candidate[data-result-id="{result_id}"]')
    item.wait_for()
    assert "Confirmed by two reviewers" in item.inner_text()
    assert "not independent" not in item.inner_text()
    assert item.locator(".decisions li").count() == 2
    # people by name (the opaque id as the tooltip), never as ids; the other reviewer has no
    # display name, so their email
    decisions = item.locator(".decisions").inner_text()
    assert f"by {REVIEWER}" in decisions and f"by {world.reviewer2.email}" in decisions
    named = item.locator(".decisions .person").first
    assert (
        named.get_attribute("title")
        == f"user id {api_id(web.dep, 'user', world.reviewer1.user_id)}"
    )
    facts = page.locator("main dl.facts").nth(1).inner_text()
    assert SEARCHER in facts
    assert OUTSIDER not in page.inner_text("main")
    assert "leads, not identifications" in page.inner_text("main")
    no_forbidden_words(page)
    check_screen(page, "case")
    # the report as a PDF, and as this page printed
    with page.expect_download() as download:
        page.locator("[data-report=pdf]").click()
    pdf = tmp_path / "report.pdf"
    download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    page.emulate_media(media="print")
    assert not page.locator("[data-report=pdf]").is_visible()
    assert not page.locator("header").is_visible()
    for width in WIDTHS:  # the printed report, as the screenshots of every screen
        page.set_viewport_size({"width": width, "height": 800})
        page.screenshot(path=str(SCREENSHOTS / f"case-print-{width}.png"), full_page=True)
    page.emulate_media(media="screen")


def test_another_organisation_opening_a_case_url_gets_not_found(
    web: WebServer, world: World, page: Any
) -> None:
    case_id, _ = search_as(web, world.investigator, world, "CW-2026/3")
    sign_in(page, web, world.outsider, path=f"/cases/{case_id}")
    page.get_by_role("heading", name="Not found").wait_for()
    assert "CW-2026/3" not in page.inner_text("main")
    check_screen(page, "case-not-found")
    # and the list of B's cases does not hold it
    page.goto(web.url("/cases"))
    page.get_by_role("heading", name="Cases").wait_for()
    assert "CW-2026/3" not in page.inner_text("main")


def upload_set(tmp: Path) -> list[dict[str, Any]]:
    """20 files: 12 face photos, 2 photos without a face, 3 corrupt images, 2 that are not
    images, 1 too small."""
    people = sorted(p for p in faces_dir("lfw-devtrain").iterdir() if p.is_dir())[:12]
    files = []
    for person in people:
        photo = sorted(person.glob("*.jpg"))[0]
        files.append({"name": photo.name, "mimeType": "image/jpeg", "buffer": photo.read_bytes()})
    for i in range(2):
        buf = io.BytesIO()
        Image.new("RGB", (320, 240), (40 + 90 * i, 120, 200)).save(buf, "PNG")
        files.append({"name": f"sky-{i}.png", "mimeType": "image/png", "buffer": buf.getvalue()})
    whole = files[0]["buffer"]
    for i in range(3):  # a real photo cut short, at three places
        cut = whole[: len(whole) // (2 + i)]
        files.append({"name": f"corrupt-{i}.jpg", "mimeType": "image/jpeg", "buffer": cut})
    files.append({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"})
    files.append({"name": "table.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n"})
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tiny, "PNG")
    files.append({"name": "tiny.png", "mimeType": "image/png", "buffer": tiny.getvalue()})
    assert len(files) == 20
    shutil.rmtree(tmp, ignore_errors=True)
    return files


def test_create_a_collection_and_upload_20_files_with_live_progress(
    web: WebServer, world: World, page: Any, tmp_path: Path
) -> None:
    sign_in(page, web, world.admin, path="/collections")
    page.wait_for_url(web.url("/collections"))
    page.get_by_role("heading", name="Collections").wait_for()
    check_screen(page, "collections")
    page.get_by_label("Name").fill("station-12")
    page.get_by_label("Legal basis").fill(LEGAL)
    page.get_by_label("Retention (days)").fill("90")
    page.get_by_role("button", name="Create the collection").click()
    page.wait_for_url(re.compile(r"/collections/."))
    page.get_by_role("heading", name=re.compile("Collection station-12")).wait_for()
    # every progress text the page shows, as it shows it
    page.evaluate(
        """() => { window.__seen = [];
        new MutationObserver(() => { const el = document.querySelector('[data-job-counts]');
          if (el && el.textContent) window.__seen.push(el.textContent); })
        .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""
    )
    files = upload_set(tmp_path / "upload")
    page.get_by_label("Images to add").set_input_files(files)
    assert page.locator(".upload-files li").count() == 20
    page.get_by_role("button", name="Upload").click()
    status = page.locator("[data-job-status]")
    status.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-job-status]').dataset.status === 'done'",
        timeout=180_000,
    )
    assert all(
        v == "100"
        for v in page.locator(".upload-files progress").evaluate_all(
            "els => els.map(e => String(e.value))"
        )
    )
    counts = page.locator("[data-job-counts]").inner_text()
    assert counts.startswith("20 of 20 files processed")
    seen = page.evaluate("window.__seen")
    assert any(not s.startswith("20 of 20") for s in seen), seen  # progress before the end
    assert "files/s" in page.locator("[data-job-rates]").inner_text()
    rejected = page.locator(".rejected li").all_inner_texts()
    names = {r.split(" — ")[0] for r in rejected}
    assert {"corrupt-0.jpg", "corrupt-1.jpg", "corrupt-2.jpg", "tiny.png"} <= names, rejected
    assert {"notes.txt", "table.csv"} <= names, rejected
    assert all(" — " in r and r.split(" — ")[1].strip() for r in rejected)
    check_screen(page, "ingest")
    # the organisation's jobs, and one job opened again: its final state from the stream
    page.get_by_role("link", name="Ingest jobs").click()
    page.get_by_role("heading", name="Ingest jobs").wait_for()
    row = page.locator("tr", has=page.get_by_text("station-12"))
    assert "done" in row.inner_text() and "20 of 20" in row.inner_text()
    check_screen(page, "jobs")
    row.get_by_role("link").click()
    page.wait_for_function(
        "() => document.querySelector('[data-job-status]')?.dataset.status === 'done'"
    )
    assert page.locator(".rejected li").count() == len(rejected)
