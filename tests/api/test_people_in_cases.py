"""People in cases are named (display name, else email) on the case, the search history, the
review queue, a result's reviews and the case report, as their organisation names them; the
opaque ids stay beside the names; no name ever crosses organisations."""

from __future__ import annotations

import io

import pytest
from fastapi import FastAPI
from pypdf import PdfReader

from facesearch.deployment import Deployment
from facesearch.search import report
from facesearch.security.tenancy import people_names
from facesearch.store.accounts import User
from tests.api.casework_world import Org, gallery, make_org, probe_bytes, search
from tests.api.conftest import MakeUser

CASE = "NAMES-2026/1"
SEARCHER = "Ina Investigator"
REVIEWER = "Rui Reviewer"
B_NAME = "Bea of Org B"


def name_user(dep: Deployment, user_id: int, name: str) -> None:
    with dep.db.session() as s:
        user = s.get(User, user_id)
        assert user is not None
        user.display_name = name


@pytest.fixture(scope="module")
def world(
    module_deployment: Deployment,
    module_app: FastAPI,
    module_make_user: MakeUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Org, Org, dict[str, str]]:
    images = gallery(tmp_path_factory.mktemp("gallery"))
    a = make_org(module_deployment, module_app, module_make_user, "Names Org A", images)
    b = make_org(module_deployment, module_app, module_make_user, "Names Org B", images)
    name_user(module_deployment, a.investigator.user_id, SEARCHER)
    name_user(module_deployment, a.reviewer1.user_id, REVIEWER)
    name_user(module_deployment, b.investigator.user_id, B_NAME)
    status, body = search(a.keys["search"], probe_bytes(), case=CASE)
    assert status == 200, body
    result_id = body["faces"][0]["candidates"][0]["result_id"]
    reply = a.reviewer1.client.post(
        f"/api/v1/results/{result_id}/reviews", json={"decision": "confirm", "note": "ears"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["reviews"][0]["user_name"] == REVIEWER
    status, _ = search(b.keys["search"], probe_bytes(), case="NAMES-B/1")
    assert status == 200
    return a, b, {"case": body["case_id"], "search": body["search_id"], "result": result_id}


def test_the_case_names_the_searcher_and_the_reviewers(
    world: tuple[Org, Org, dict[str, str]],
) -> None:
    a, _b, ids = world
    case = a.keys["audit"].get(f"/api/v1/cases/{ids['case']}").json()
    (found,) = case["search_list"]
    # a search by an API key is its owner's: named, with the opaque ids beside the name
    assert found["user_name"] == SEARCHER and found["user_id"] == a.investigator.uid
    assert found["api_key_id"] is not None
    assert case["created_by_name"] == SEARCHER and case["created_by"] == a.investigator.uid
    decided = [r for r in found["results"] if r["reviews"]]
    (review,) = decided[0]["reviews"]
    assert review["user_name"] == REVIEWER and review["user_id"] == a.reviewer1.uid
    result = a.keys["review2"].get(f"/api/v1/results/{ids['result']}").json()
    assert [r["user_name"] for r in result["reviews"]] == [REVIEWER]
    # the list of cases and the auditor's search history
    listed = a.keys["search"].get("/api/v1/cases").json()["items"]
    assert {c["number"]: c["created_by_name"] for c in listed}[CASE] == SEARCHER
    history = a.keys["audit"].get("/api/v1/audit/searches").json()["items"]
    assert [h["user_name"] for h in history] == [SEARCHER]
    # the review queue says for which case and by whom
    queue = a.keys["review2"].get("/api/v1/reviews/queue").json()["items"]
    assert queue and {q["case_number"] for q in queue} == {CASE}
    assert {q["searched_by_name"] for q in queue} == {SEARCHER}
    assert {q["searched_by"] for q in queue} == {a.investigator.uid}
    # an email stands in for a person without a display name
    name_user_email = a.reviewer2.client.post(
        f"/api/v1/results/{queue[0]['result_id']}/reviews", json={"decision": "reject"}
    ).json()
    assert name_user_email["reviews"][-1]["user_name"] == a.reviewer2.email


def test_the_case_report_names_people(world: tuple[Org, Org, dict[str, str]]) -> None:
    a, _b, ids = world
    pdf = a.keys["audit"].get(f"/api/v1/cases/{ids['case']}/report.pdf")
    assert pdf.status_code == 200
    text = " ".join(
        (page.extract_text() or "") for page in PdfReader(io.BytesIO(pdf.content)).pages
    )
    flat = " ".join(text.split())
    assert f"By {SEARCHER} (with an API key)" in flat
    assert f"confirm by {REVIEWER}" in flat
    assert "Opened" in flat and f"by {SEARCHER}" in flat
    assert B_NAME not in flat


def test_no_name_crosses_organisations(
    world: tuple[Org, Org, dict[str, str]], module_deployment: Deployment
) -> None:
    a, b, ids = world
    # B cannot open A's case, and nothing B reads names A's people
    assert b.keys["audit"].get(f"/api/v1/cases/{ids['case']}").status_code == 404
    for client, path in (
        (b.keys["search"], "/api/v1/cases"),
        (b.keys["audit"], "/api/v1/audit/searches"),
        (b.keys["review1"], "/api/v1/reviews/queue"),
    ):
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert SEARCHER not in reply.text and REVIEWER not in reply.text, path
    b_case = b.keys["search"].get("/api/v1/cases").json()["items"][0]
    assert b_case["created_by_name"] == B_NAME
    # and the one lookup behind every name answers only for the organisation's own users
    with module_deployment.db.session() as s:
        a_org = a.admin.org_id
        assert a_org is not None
        both = [a.investigator.user_id, b.investigator.user_id, 999_999, None]
        assert people_names(s, a_org, both) == {a.investigator.user_id: SEARCHER}


UNICODE_NAME = "Zoë Łukasiewicz 李"
UNICODE_NOTE = "Ähnliche Narbe — 同じ人物の可能性"


def unicode_case(
    world: tuple[Org, Org, dict[str, str]], make_user: MakeUser, dep: Deployment, number: str
) -> str:
    a, _b, _ids = world
    reviewer = make_user("Names Org A", ["reviewer"])
    name_user(dep, reviewer.user_id, UNICODE_NAME)
    status, body = search(a.keys["search"], probe_bytes(), case=number)
    assert status == 200, body
    result_id = body["faces"][0]["candidates"][0]["result_id"]
    reply = reviewer.client.post(
        f"/api/v1/results/{result_id}/reviews", json={"decision": "confirm", "note": UNICODE_NOTE}
    )
    assert reply.status_code == 200, reply.text
    return str(body["case_id"])


def pdf_text(content: bytes) -> str:
    pages = PdfReader(io.BytesIO(content)).pages
    return " ".join(" ".join((page.extract_text() or "") for page in pages).split())


def test_the_report_draws_names_and_notes_in_any_script(
    world: tuple[Org, Org, dict[str, str]],
    module_make_user: MakeUser,
    module_deployment: Deployment,
) -> None:
    if not report.BODY_FONTS[""].is_file() or not all(p.is_file() for p in report.FALLBACK_FONTS):
        pytest.skip("needs fonts-dejavu-core and fonts-droid-fallback (.ci/apt-packages)")
    a = world[0]
    case_id = unicode_case(world, module_make_user, module_deployment, "NAMES-2026/2")
    pdf = a.keys["audit"].get(f"/api/v1/cases/{case_id}/report.pdf")
    assert pdf.status_code == 200
    flat = pdf_text(pdf.content)
    assert f"confirm by {UNICODE_NAME}" in flat
    assert UNICODE_NOTE in flat
    assert "could not be drawn" not in flat and "?" not in UNICODE_NAME
    assert b"DejaVu" in pdf.content  # the Unicode font, embedded (subset)


def test_without_the_fonts_the_report_says_what_it_could_not_draw(
    world: tuple[Org, Org, dict[str, str]],
    module_make_user: MakeUser,
    module_deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The standard font, a clear "?" for what it cannot draw, and a note saying so."""
    a = world[0]
    case_id = unicode_case(world, module_make_user, module_deployment, "NAMES-2026/3")
    monkeypatch.setitem(report.BODY_FONTS, "", report.DEJAVU / "absent.ttf")
    pdf = a.keys["audit"].get(f"/api/v1/cases/{case_id}/report.pdf")
    assert pdf.status_code == 200
    flat = pdf_text(pdf.content)
    assert "confirm by Zoë ?ukasiewicz ?" in flat
    assert "could not be drawn with the fonts of this server" in flat
