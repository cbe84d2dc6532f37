"""Issue 11, Low: "absolute server paths appear in 422 messages, job summaries and provenance".
The operator's ingest (`facesearch ingest`, FolderIngest over a path) recorded the absolute path
of every file as its provenance, and the API showed it to every investigator of every
organisation the collection is shared with. Provenance is now `folder:<root name>/<path below
it>`; the root itself stays on the ingest run row, which only the operator can read."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from facesearch.deployment import Deployment
from facesearch.ingest.runner import FolderIngest
from facesearch.store.gallery import IngestRun, SourceFile
from tests.api.casework_world import LEGAL, PURPOSE, probe_bytes, search
from tests.api.conftest import MakeUser, db_id
from tests.conftest import faces_dir


def test_operator_ingest_records_no_server_path_and_the_api_shows_none(
    deployment: Deployment, make_user: MakeUser, tmp_path: Path
) -> None:
    root = tmp_path / "operator-secret-home" / "evidence-2024"
    (root / "sub").mkdir(parents=True)
    shutil.copy(faces_dir("small", "barack_obama") / "obama1.jpg", root / "sub" / "a.jpg")
    shutil.copy(faces_dir("small", "joe_biden") / "biden.jpg", root / "b.jpg")
    lone = tmp_path / "operator-secret-home" / "single" / "c.jpg"
    lone.parent.mkdir()
    shutil.copy(faces_dir("small", "barack_obama") / "obama.jpg", lone)

    admin = make_user("Org A", ["org_admin", "auditor"])
    investigator = make_user("Org A", ["investigator"])
    made = admin.client.post(
        "/api/v1/collections", json={"name": "cctv", "legal_basis": LEGAL, "retention_days": 30}
    )
    assert made.status_code == 201, made.text
    cid = db_id(deployment, "collection", made.json()["id"])
    # what `facesearch ingest <folder> -c ...` runs: a folder, then a single file
    summary = FolderIngest(deployment, cid, workers=1).run(root)
    assert summary.ok == 2
    assert FolderIngest(deployment, cid, workers=1).run(lone).ok == 1

    with deployment.db.session() as s:
        sources = sorted(s.scalars(select(SourceFile.source)))
        runs = list(s.scalars(select(IngestRun.source).order_by(IngestRun.id)))
    assert sources == [
        "folder:evidence-2024/b.jpg",
        "folder:evidence-2024/sub/a.jpg",
        "folder:single/c.jpg",
    ]
    # the operator's own record keeps where the folder was
    assert runs == [str(root.resolve()), str(lone.parent.resolve())]

    secret = "operator-secret-home"
    status, body = search(investigator.client, probe_bytes(), case="2024/5")
    assert status == 200, body
    cands = [c for f in body["faces"] for c in f["candidates"]]
    assert {c["source"] for c in cands} <= set(sources)
    texts = [str(body)]
    for c in cands:
        face = investigator.client.get(f"/api/v1/faces/{c['face_id']}")
        assert face.status_code == 200
        assert face.json()["source"] in sources
        texts.append(face.text)
    texts.append(investigator.client.get(f"/api/v1/searches/{body['search_id']}").text)
    texts.append(investigator.client.get(f"/api/v1/cases/{body['case_id']}").text)
    texts.append(admin.client.get("/api/v1/audit/entries", params={"limit": 1000}).text)
    texts.append(admin.client.get("/api/v1/collections").text)
    texts.append(admin.client.get("/api/v1/audit/export").text)
    for text in texts:
        assert secret not in text and str(tmp_path) not in text
    assert PURPOSE  # the search above was an accountable one (case and purpose)


def test_error_messages_carry_no_server_path(deployment: Deployment, make_user: MakeUser) -> None:
    admin = make_user("Org A", ["org_admin"])
    made = admin.client.post(
        "/api/v1/collections", json={"name": "drop", "legal_basis": LEGAL, "retention_days": 30}
    )
    cid = made.json()["id"]
    home = str(deployment.settings.home)
    for folder in ("/etc", "nope", "../..", "a/../../b", str(deployment.settings.home)):
        reply = admin.client.post(f"/api/v1/collections/{cid}/folder-jobs", json={"folder": folder})
        assert 400 <= reply.status_code < 500, reply.text
        assert home not in reply.text, reply.text
