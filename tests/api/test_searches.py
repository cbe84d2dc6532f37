"""POST /api/v1/searches and what hangs off it: crops, cases, history, audit, uploads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from facesearch.deployment import Deployment
from facesearch.ingest.jobs import runner_for
from facesearch.security import audit
from facesearch.store.audit import AuditEntry
from facesearch.store.casework import Search
from tests.api.casework_world import (
    PURPOSE,
    Org,
    blank_png,
    gallery,
    make_org,
    probe_bytes,
    search,
)
from tests.api.conftest import MakeUser, api_id, db_id


@pytest.fixture(scope="module")
def org(
    module_deployment: Deployment,
    module_app: FastAPI,
    module_make_user: MakeUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> Org:
    return make_org(
        module_deployment,
        module_app,
        module_make_user,
        "Org A",
        gallery(tmp_path_factory.mktemp("gallery")),
    )


@pytest.fixture(scope="module")
def first(org: Org) -> dict:  # type: ignore[type-arg]
    status, body = search(org.keys["search"], probe_bytes())
    assert status == 200, body
    return body


def test_search_answers_leads_with_authenticated_crops(
    org: Org,
    first: dict,
    module_deployment: Deployment,  # type: ignore[type-arg]
) -> None:
    cands = [c for f in first["faces"] for c in f["candidates"]]
    assert cands and all(c["status"] == "lead" for c in cands)
    assert "not identifications" in first["notice"]
    best = cands[0]
    assert best["collection"] == "mugshots" and best["collection_id"] == org.collection_id
    assert best["crop_url"] == f"/api/v1/faces/{best['face_id']}/crop"
    assert best["source"].endswith("obama1.jpg")
    # the record exists and names who, case, purpose, probe hash, collections, results
    with module_deployment.db.session() as s:
        entry = s.get(AuditEntry, db_id(module_deployment, "audit_entry", first["audit_entry_id"]))
        assert entry is not None and entry.action == "search.performed"
        assert entry.actor_user_id == org.investigator.user_id
        assert entry.actor_key_id is not None
        assert entry.details["purpose"] == PURPOSE
        stored = [api_id(module_deployment, "face", r["face_id"]) for r in entry.details["results"]]
        assert stored == [c["face_id"] for c in cands]
    # crops need authentication and are audited
    crop = org.keys["search"].get(best["crop_url"])
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert crop.content[:2] == b"\xff\xd8"
    with module_deployment.db.session() as s:
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
        assert last.action == "result.viewed" and last.target_id == str(
            db_id(module_deployment, "face", best["face_id"])
        )
    from fastapi.testclient import TestClient

    anonymous = TestClient(org.keys["search"].app)
    assert anonymous.get(best["crop_url"]).status_code == 401
    # an auditor (no search or review scope) may not view crops
    assert org.keys["audit"].get(best["crop_url"]).status_code == 403
    face = org.keys["search"].get(f"/api/v1/faces/{best['face_id']}")
    assert face.status_code == 200 and face.json()["collection"] == "mugshots"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"purpose": PURPOSE}, "case_number"),
        ({"case_number": "2024/17"}, "purpose"),
        ({"case_number": "x", "purpose": PURPOSE}, "case_number"),
        ({"case_number": "2024/17", "purpose": "too short"}, "purpose"),
        ({"case_number": "2024/17", "purpose": PURPOSE, "top_k": "0"}, "top_k"),
    ],
)
def test_case_and_purpose_are_required(org: Org, data: dict, field: str) -> None:  # type: ignore[type-arg]
    reply = org.keys["search"].post(
        "/api/v1/searches", data=data, files={"probe": ("p.png", blank_png(), "image/png")}
    )
    assert reply.status_code == 422, reply.text
    assert field in json.dumps(reply.json()["detail"])


def test_bad_images_get_a_reason_not_a_500(org: Org) -> None:
    for payload in (b"", b"GIF89a garbage", b"\xff\xd8\xff\xe0 truncated jpeg", b"\x00" * 100):
        reply = org.keys["search"].post(
            "/api/v1/searches",
            data={"case_number": "2024/17", "purpose": PURPOSE},
            files={"probe": ("p.jpg", payload, "image/jpeg")},
        )
        assert reply.status_code in (400, 422), reply.text
        assert reply.json()["detail"]
    reply = org.keys["search"].post(
        "/api/v1/searches", data={"case_number": "2024/17", "purpose": PURPOSE}
    )
    assert reply.status_code == 422


def test_search_needs_the_search_scope(org: Org) -> None:
    for name in ("ingest", "audit", "review1", "admin"):
        status, _ = search(org.keys[name], blank_png())
        assert status == 403, name


def test_unknown_collection_is_404(org: Org) -> None:
    """An integer, junk, a tampered id or an id of another kind: all the same 404."""
    status, body = search(org.keys["search"], blank_png(), collections="999999")
    assert status == 404, body
    tampered = org.collection_id[:-1] + ("a" if org.collection_id[-1] != "a" else "b")
    face_kind = "face_" + org.collection_id.removeprefix("col_")
    for junk in ("1,abc", tampered, face_kind, f"{org.collection_id},{tampered}"):
        assert search(org.keys["search"], blank_png(), collections=junk) == (404, body), junk


def test_cases_and_history(org: Org, first: dict) -> None:  # type: ignore[type-arg]
    cases = org.keys["search"].get("/api/v1/cases").json()
    assert cases["total"] >= 1
    case = org.keys["search"].get(f"/api/v1/cases/{first['case_id']}")
    assert case.status_code == 200
    detail = case.json()
    assert detail["number"] == "2024/17"
    searches = {s["id"]: s for s in detail["search_list"]}
    assert first["search_id"] in searches
    assert len(searches[first["search_id"]]["results"]) == sum(
        len(f["candidates"]) for f in first["faces"]
    )
    one = org.keys["search"].get(f"/api/v1/searches/{first['search_id']}").json()
    assert one["purpose"] == PURPOSE and one["results"]
    # the auditor sees the organisation's search history and the case, not as a searcher
    history = org.keys["audit"].get("/api/v1/audit/searches")
    assert history.status_code == 200
    assert first["search_id"] in [s["id"] for s in history.json()["items"]]
    assert org.keys["audit"].get(f"/api/v1/cases/{first['case_id']}").status_code == 200
    assert org.keys["search"].get("/api/v1/audit/searches").status_code == 403
    assert org.keys["ingest"].get(f"/api/v1/cases/{first['case_id']}").status_code == 403


def test_audit_entries_and_signed_export(org: Org, first: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    entries = org.keys["audit"].get("/api/v1/audit/entries", params={"limit": 1000}).json()
    actions = {e["action"] for e in entries["items"]}
    assert {"search.performed", "collection.created"} <= actions
    assert all(e["org_id"] == org.admin.oid for e in entries["items"])
    reply = org.keys["audit"].get("/api/v1/audit/export")
    assert reply.status_code == 200
    path = tmp_path / "export.jsonl"
    path.write_bytes(reply.content)
    key = org.keys["audit"].get("/api/v1/audit/public-key").json()
    report = audit.verify_export(path, expected_public_key=key["fingerprint"])
    assert report.ok, report
    assert report.scope == "organisation"
    after = (
        org.keys["audit"].get("/api/v1/audit/entries", params={"action": "audit.exported"}).json()
    )
    assert after["total"] >= 1
    assert org.keys["search"].get("/api/v1/audit/entries").status_code == 403


def test_upload_job_progress(org: Org, module_deployment: Deployment) -> None:
    probe = probe_bytes()
    files = [
        ("files", ("suspect.jpg", probe, "image/jpeg")),
        ("files", ("broken.jpg", b"\xff\xd8 not really", "image/jpeg")),
        ("files", ("blank.png", blank_png(), "image/png")),
    ]
    reply = org.keys["ingest"].post(f"/api/v1/collections/{org.collection_id}/uploads", files=files)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    assert reply.json()["files_total"] == 3
    assert runner_for(module_deployment).wait_idle(120)
    job = org.keys["ingest"].get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "done", job
    assert job["files_done"] == 3 and job["files_total"] == 3 and job["faces"] >= 1
    assert job["summary"]["rejected"] == 1
    assert job["summary"]["rejected_files"][0]["path"] == f"upload:{job_id}/broken.jpg"
    # the temporary folder is gone, provenance names the upload
    uploads = module_deployment.settings.home / "uploads"
    assert not any(uploads.iterdir())
    jobs = org.keys["ingest"].get("/api/v1/jobs").json()
    assert job_id in [j["id"] for j in jobs["items"]]
    # investigators do not ingest
    assert org.keys["search"].get(f"/api/v1/jobs/{job_id}").status_code == 403
    # server folder jobs: organisation administrators, below the drop folder only
    admin = org.keys["admin"]
    outside = admin.post(
        f"/api/v1/collections/{org.collection_id}/folder-jobs", json={"folder": "/etc"}
    )
    assert outside.status_code == 422
    escape = admin.post(
        f"/api/v1/collections/{org.collection_id}/folder-jobs", json={"folder": "../.."}
    )
    assert escape.status_code == 422
    assert (
        org.keys["ingest"]
        .post(f"/api/v1/collections/{org.collection_id}/folder-jobs", json={"folder": "."})
        .status_code
        == 403
    )
    with module_deployment.db.session() as s:
        assert s.scalar(select(Search.id).limit(1)) is not None


def test_search_limits_come_from_the_settings(tmp_path: Path) -> None:
    """An operator raises the search limits of a pipeline's deployment by setting, not code."""
    from facesearch.api.app import create_app
    from facesearch.security.ratelimit import DEFAULT_LIMITS, Limit
    from tests.api.conftest import new_deployment

    dep = new_deployment(
        tmp_path, searches_per_minute_per_account=600, searches_per_minute_per_address=900
    )
    try:
        limits = create_app(dep).state.limiter.limits
        assert limits["search:account"] == Limit(600, 60.0)
        assert limits["search:address"] == Limit(900, 60.0)
        assert limits["signin:account"] == DEFAULT_LIMITS["signin:account"]
    finally:
        dep.close()


def test_searches_are_rate_limited_per_account(org: Org, module_app: FastAPI) -> None:
    from facesearch.security.ratelimit import Limit

    limits = module_app.state.limiter.limits
    saved = limits["search:account"]
    limits["search:account"] = Limit(2, 60.0)
    try:
        client = org.keys["search"]
        client.app.state.limiter._hits.clear()
        codes = [search(client, blank_png())[0] for _ in range(2)]
        assert codes == [200, 200]
        reply = client.post(
            "/api/v1/searches",
            data={"case_number": "2024/17", "purpose": PURPOSE},
            files={"probe": ("probe.png", blank_png(), "image/png")},
        )
        assert reply.status_code == 429
        assert 1 <= int(reply.headers["Retry-After"]) <= 60
    finally:
        limits["search:account"] = saved
        module_app.state.limiter._hits.clear()
