"""The endpoints the web application's casework screens need: the faces of a probe before a
search (and searching only one of them), a face's source image, the case report as a PDF, and a
job's live progress as server-sent events. Each one is tenancy-checked (another organisation's
id: 404) and, where it reads personal data, on the audit record."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pypdf import PdfReader
from sqlalchemy import func, select

from facesearch.deployment import Deployment
from facesearch.ingest.jobs import runner_for
from facesearch.search.report import STATEMENT
from facesearch.store.audit import AuditEntry
from facesearch.store.casework import Search
from tests.api.casework_world import (
    PURPOSE,
    Org,
    blank_png,
    make_org,
    people_gallery,
    probe_bytes,
    two_people_probe,
)
from tests.api.conftest import MakeUser, db_id

CASE = "WEB-2026/7"


@pytest.fixture(scope="module")
def orgs(
    module_deployment: Deployment,
    module_app: FastAPI,
    module_make_user: MakeUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Org, Org]:
    images = people_gallery(tmp_path_factory.mktemp("gallery"))
    a = make_org(module_deployment, module_app, module_make_user, "Web Org A", images)
    b = make_org(module_deployment, module_app, module_make_user, "Web Org B", images)
    return a, b


def entries(dep: Deployment, action: str) -> list[AuditEntry]:
    with dep.db.session() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        s.expunge_all()
        return rows


def probe_faces(org: Org, probe: bytes, **data: str) -> Any:
    return org.keys["search"].post(
        "/api/v1/searches/probe-faces",
        data=data,
        files={"probe": ("probe.jpg", probe, "image/jpeg")},
    )


def search_face(org: Org, probe: bytes, face: int | None) -> Any:
    data = {"case_number": CASE, "purpose": PURPOSE, "top_k": "3"}
    if face is not None:
        data["face"] = str(face)
    return org.keys["search"].post(
        "/api/v1/searches", data=data, files={"probe": ("probe.jpg", probe, "image/jpeg")}
    )


def test_probe_faces_are_boxed_numbered_audited_and_nothing_is_kept(
    orgs: tuple[Org, Org], module_deployment: Deployment
) -> None:
    a, _ = orgs
    probe, _ = two_people_probe()
    with module_deployment.db.session() as s:
        searches_before = s.scalar(select(func.count(Search.id)))
    reply = probe_faces(a, probe)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["width"] > body["height"] > 0
    assert [f["index"] for f in body["faces"]] == [0, 1]
    for face in body["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= body["width"] and 0 <= y1 < y2 <= body["height"]
        assert "sharpness" in face["quality"] or face["quality"]
    with module_deployment.db.session() as s:
        assert s.scalar(select(func.count(Search.id))) == searches_before  # not a search
    seen = entries(module_deployment, "search.probe_examined")[-1]
    assert seen.org_id == a.investigator.org_id
    assert seen.details["probe_faces"] == 2 and len(seen.details["probe_hash"]) == 64
    # investigators only; another organisation's collection is not there
    assert (
        a.keys["ingest"]
        .post(
            "/api/v1/searches/probe-faces",
            files={"probe": ("probe.jpg", probe, "image/jpeg")},
        )
        .status_code
        == 403
    )
    _, b = orgs
    assert probe_faces(a, probe, collections=str(b.collection_id)).status_code == 404
    bad = probe_faces(a, b"not an image")
    assert bad.status_code == 422


def test_a_search_of_one_chosen_face_finds_that_person_only(
    orgs: tuple[Org, Org], module_deployment: Deployment
) -> None:
    a, _ = orgs
    probe, expected = two_people_probe()
    boxes = {f["index"]: f["box"] for f in probe_faces(a, probe).json()["faces"]}
    width = probe_faces(a, probe).json()["width"]
    for index, box in boxes.items():
        reply = search_face(a, probe, index)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert [f["index"] for f in body["faces"]] == [index]
        assert body["faces"][0]["box"] == box
        top = body["faces"][0]["candidates"][0]
        person = expected[0] if (box[0] + box[2]) / 2 < width / 2 else expected[1]
        assert top["source"].endswith(person) and top["above_threshold"]
        performed = entries(module_deployment, "search.performed")[-1]
        assert performed.details["probe_face_chosen"] == index
        assert {r["probe_face"] for r in performed.details["results"]} == {index}
    stored = a.keys["search"].get(f"/api/v1/searches/{body['search_id']}").json()
    assert stored["model_thresholds"] == {m["model_id"]: m["threshold"] for m in body["models"]}
    every = search_face(a, probe, None).json()
    assert len(every["faces"]) == 2
    missing = search_face(a, probe, 7)
    assert missing.status_code == 422 and "face" in missing.text


def test_the_source_image_of_a_candidate_is_served_audited_and_tenancy_checked(
    orgs: tuple[Org, Org], module_deployment: Deployment
) -> None:
    a, b = orgs
    body = search_face(a, probe_bytes(), None).json()
    cand = body["faces"][0]["candidates"][0]
    face = a.keys["search"].get(f"/api/v1/faces/{cand['face_id']}").json()
    assert face["image_url"] == f"/api/v1/faces/{cand['face_id']}/image"
    assert face["width"] and face["height"]
    reply = a.keys["search"].get(face["image_url"])
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/jpeg"
    assert reply.headers["cache-control"] == "no-store, private"
    from PIL import Image

    with Image.open(io.BytesIO(reply.content)) as img:
        assert img.size == (face["width"], face["height"])
    viewed = entries(module_deployment, "result.image_viewed")[-1]
    # the audit log holds the database id; the API showed the opaque one
    assert viewed.target_id == str(db_id(module_deployment, "face", cand["face_id"]))
    # organisation B's users: not found (A's collection is private)
    assert b.keys["search"].get(face["image_url"]).status_code == 404
    assert b.keys["search"].get(f"/api/v1/faces/{cand['face_id']}").status_code == 404


def test_case_report_pdf_opens_names_the_case_and_says_candidates_are_leads(
    orgs: tuple[Org, Org], module_deployment: Deployment
) -> None:
    a, b = orgs
    body = search_face(a, probe_bytes(), None).json()
    result_id = body["faces"][0]["candidates"][0]["result_id"]
    note = "Same scar above the left eye"
    reply = a.keys["review1"].post(
        f"/api/v1/results/{result_id}/reviews", json={"decision": "confirm", "note": note}
    )
    assert reply.status_code == 200, reply.text
    case_id = body["case_id"]
    # the case and the review queue carry each search's model thresholds (for the screens)
    thresholds = {m["model_id"]: m["threshold"] for m in body["models"]}
    case = a.keys["audit"].get(f"/api/v1/cases/{case_id}").json()
    assert all(s["model_thresholds"] == thresholds for s in case["search_list"])
    queue = a.keys["review2"].get("/api/v1/reviews/queue").json()["items"]
    assert queue and all(item["model_thresholds"] == thresholds for item in queue)
    pdf = a.keys["audit"].get(f"/api/v1/cases/{case_id}/report.pdf")
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    reader = PdfReader(io.BytesIO(pdf.content))
    text = " ".join((page.extract_text() or "") for page in reader.pages)
    flat = " ".join(text.split())
    assert CASE in flat
    assert " ".join(STATEMENT.split()[:8]) in flat  # "Candidates are leads, not identifications…"
    assert "leads, not identifications" in flat
    assert note in flat and "confirm" in flat
    assert "identified" not in flat.lower() and "match found" not in flat.lower()
    exported = entries(module_deployment, "case.report_exported")[-1]
    assert exported.details["case_number"] == CASE
    # another organisation: not found; an ingestor has no business with cases
    assert b.keys["audit"].get(f"/api/v1/cases/{case_id}/report.pdf").status_code == 404
    assert a.keys["ingest"].get(f"/api/v1/cases/{case_id}/report.pdf").status_code == 403


def read_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        if name and data is not None:
            events.append((name, data))
    return events


def test_job_events_stream_progress_rejections_and_the_end(
    orgs: tuple[Org, Org], module_deployment: Deployment, tmp_path: Path
) -> None:
    a, b = orgs
    files = [
        ("files", ("suspect.jpg", probe_bytes(), "image/jpeg")),
        ("files", ("broken.jpg", b"\xff\xd8 not really", "image/jpeg")),
        ("files", ("notes.txt", b"hello, not an image", "text/plain")),
        ("files", ("tiny.png", blank_png(8), "image/png")),
    ]
    reply = a.keys["ingest"].post(f"/api/v1/collections/{a.collection_id}/uploads", files=files)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    with a.keys["ingest"].stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    events = read_events(text)
    assert events and events[-1][0] == "end"
    assert all(name == "progress" for name, _ in events[:-1])
    end = events[-1][1]
    assert end["status"] == "done" and end["files_done"] == end["files_total"] == 4
    assert end["faces"] >= 1 and end["files_per_s"] > 0
    rejected = {r["path"]: r["reason"] for r in end["rejected_files"]}
    assert f"upload:{job_id}/broken.jpg" in rejected and all(rejected.values())
    assert f"upload:{job_id}/notes.txt" in rejected
    assert rejected[f"upload:{job_id}/tiny.png"].startswith("too_small")
    assert runner_for(module_deployment).wait_idle(60)
    # a finished job's stream answers its end at once
    again = a.keys["ingest"].get(f"/api/v1/jobs/{job_id}/events")
    assert read_events(again.text)[-1][0] == "end"
    # another organisation's job is not found; investigators do not follow ingest
    assert b.keys["ingest"].get(f"/api/v1/jobs/{job_id}/events").status_code == 404
    assert a.keys["search"].get(f"/api/v1/jobs/{job_id}/events").status_code == 403


def test_a_stream_lasts_a_bounded_time(
    orgs: tuple[Org, Org], module_deployment: Deployment
) -> None:
    from facesearch.ingest import jobs
    from facesearch.security.actor import SystemActor
    from facesearch.store.jobs import Job, JobKind, JobStatus

    a, _ = orgs
    with module_deployment.db.session() as s:
        job = Job(
            org_id=a.ingestor.org_id,
            collection_id=a.collection_db_id,
            kind=JobKind.UPLOAD,
            status=JobStatus.RUNNING,
            files_total=5,
            summary={},
        )
        s.add(job)
        s.flush()
        job_id = job.id
    actor = SystemActor(user_id=None, org_id=a.ingestor.org_id, api_key_id=None, ip=None)
    with module_deployment.db.session() as s:
        chunks = list(
            jobs.job_events(module_deployment, s, actor, job_id, lifetime_s=0.6, poll_s=0.1)
        )
    events = read_events("".join(chunks))
    assert [name for name, _ in events] == ["progress"]  # no end: the stream just stops
    assert chunks[0].startswith("retry:")
