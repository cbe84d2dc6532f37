"""Sensitive metadata is not plaintext on disk (issue 11, Medium 10; ADR 0010).

Every sensitive value the test writes through the API — organisation names (the client list),
emails, case numbers, purposes, reviewer notes, collection names and legal bases, original file
names and drop-folder paths — is searched for in a copy of facesearch.db and its -wal taken off
the disk while the service runs; none may be found. Staged uploads are sealed too."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI

from facesearch.deployment import Deployment
from facesearch.ingest.jobs import imports_root, runner_for
from tests.api.casework_world import make_org, probe_bytes, search
from tests.api.conftest import MakeUser
from tests.conftest import faces_dir

ORG_A = "Cobalt Meridian Holdings"
ORG_B = "Quillfeather Investigations"
CASE = "ZX81-7731/QF"
PURPOSE = "Locate the witness of the Marigold Lane arson from a doorbell still"
NOTE = "Tattoo on the left wrist does not match the Xylophone report"
UPLOAD_NAME = "tangerine_suspect_portrait.jpg"
DROP_DIR = "batch-sapphire-harbour"
DROP_NAME = "periwinkle_witness.jpg"


def _grep(copy: bytes, values: list[str]) -> list[str]:
    found = []
    for value in values:
        for variant in {value, value.lower(), value.upper()}:
            if variant.encode() in copy or variant.encode("utf-16-le") in copy:
                found.append(value)
                break
    return found


@pytest.mark.sqlite_only  # SQLCipher; PostgreSQL: test_sealed_on_postgresql
def test_a_copy_of_the_database_reveals_no_sensitive_value(
    deployment: Deployment, app: FastAPI, make_user: MakeUser, tmp_path: Path
) -> None:
    obama = faces_dir("small", "barack_obama")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    shutil.copy(obama / "obama1.jpg", gallery / "obama1.jpg")
    a = make_org(deployment, app, make_user, ORG_A, gallery)
    b = make_user(ORG_B, ["org_admin"])
    # a search with its case number and purpose, a lead reviewed with a note
    status, body = search(a.keys["search"], probe_bytes(), case=CASE, purpose=PURPOSE)
    assert status == 200, body
    result_id = body["faces"][0]["candidates"][0]["result_id"]
    reply = a.keys["review1"].post(
        f"/api/v1/results/{result_id}/reviews", json={"decision": "reject", "note": NOTE}
    )
    assert reply.status_code in (200, 201), reply.text
    # an upload with its original file name, a drop-folder job with its path
    image = (obama / "obama2.jpg").read_bytes()
    upload = a.keys["ingest"].post(
        f"/api/v1/collections/{a.collection_id}/uploads",
        files=[("files", (UPLOAD_NAME, image, "image/jpeg"))],
    )
    assert upload.status_code == 202, upload.text
    assert runner_for(deployment).wait_idle(180)
    assert a.admin.org_id is not None
    drop = imports_root(deployment, a.admin.org_id) / DROP_DIR
    drop.mkdir(parents=True, mode=0o700)
    shutil.copy(faces_dir("small", "joe_biden") / "biden.jpg", drop / DROP_NAME)
    job = a.keys["admin"].post(
        f"/api/v1/collections/{a.collection_id}/folder-jobs", json={"folder": DROP_DIR}
    )
    assert job.status_code == 202, job.text
    assert runner_for(deployment).wait_idle(180)
    sources = [
        f["candidates"][0]["source"]
        for f in search(a.keys["search"], image, case=CASE)[1]["faces"]
        if f["candidates"]
    ]
    assert any(UPLOAD_NAME.removesuffix(".jpg") in s for s in sources), sources

    sensitive = [
        ORG_A,
        ORG_B,
        CASE,
        PURPOSE,
        NOTE,
        UPLOAD_NAME.removesuffix(".jpg"),
        DROP_DIR,
        DROP_NAME.removesuffix(".jpg"),
        "Police Act s.64A",  # the collections' legal basis
        "mugshots",
        *(u.email for u in (a.admin, a.investigator, a.reviewer1, a.auditor, a.ingestor, b)),
    ]
    # the attacker's copy, taken while the service runs (the WAL holds the latest writes)
    db = deployment.settings.db_path
    copies = tmp_path / "stolen"
    copies.mkdir()
    stolen = b""
    for suffix in ("", "-wal"):
        source = Path(f"{db}{suffix}")
        if source.exists():
            shutil.copyfile(source, copies / source.name)
            stolen += (copies / source.name).read_bytes()
    assert len(stolen) > 50_000
    assert b"SQLite format 3" not in stolen[:16]
    assert _grep(stolen, sensitive) == []
    # the service itself still reads them
    assert a.keys["search"].get(f"/api/v1/searches/{body['search_id']}").json()["purpose"]


def test_staged_uploads_are_sealed_while_queued(
    deployment: Deployment, app: FastAPI, make_user: MakeUser, tmp_path: Path
) -> None:
    obama = faces_dir("small", "barack_obama")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    shutil.copy(obama / "obama1.jpg", gallery / "obama1.jpg")
    a = make_org(deployment, app, make_user, ORG_A, gallery)
    image = (obama / "obama2.jpg").read_bytes()
    runner = runner_for(deployment)
    gate = threading.Event()
    runner.submit_work(0, lambda: gate.wait(60) and None)  # hold the job queue
    try:
        reply = a.keys["ingest"].post(
            f"/api/v1/collections/{a.collection_id}/uploads",
            files=[("files", (UPLOAD_NAME, image, "image/jpeg"))],
        )
        assert reply.status_code == 202, reply.text
        staged = [p for p in (deployment.settings.home / "uploads").rglob("*") if p.is_file()]
        assert staged, "the upload waits in the staging folder"
        for path in staged:
            data = path.read_bytes()
            assert image[:4096] not in data and b"\xff\xd8\xff" not in data[:16]
            assert path.stat().st_mode & 0o077 == 0
    finally:
        gate.set()
    assert runner.wait_idle(180)
    job = a.keys["ingest"].get(f"/api/v1/jobs/{reply.json()['id']}").json()
    assert job["status"] == "done" and job["faces"] >= 1, job


@pytest.mark.postgresql_only
def test_sealed_on_postgresql(
    deployment: Deployment, app: FastAPI, make_user: MakeUser, tmp_path: Path
) -> None:
    """On PostgreSQL there is no SQLCipher (docs/scaling.md): the metadata is the server's to
    encrypt at rest, and the doctor says so. What facesearch seals itself stays sealed whatever
    the database: embeddings in their column, TOTP secrets, images and crops in the blob store."""
    from facesearch.store import faces
    from facesearch.store.gallery import Face
    from tests.pg import RawDatabase

    obama = faces_dir("small", "barack_obama")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    shutil.copy(obama / "obama1.jpg", gallery / "obama1.jpg")
    a = make_org(deployment, app, make_user, ORG_A, gallery)
    raw = RawDatabase(deployment)
    try:
        assert raw.dialect == "postgresql"
        # metadata: plaintext to the database's administrator (the documented limit)
        names = [r[0] for r in raw.execute("SELECT name FROM organisations")]  # type: ignore[attr-defined]
        assert ORG_A in names
        stored = [tuple(r) for r in raw.execute("SELECT id, embedding FROM faces")]  # type: ignore[attr-defined]
        query = "SELECT totp_secret FROM users WHERE totp_secret IS NOT NULL"
        secrets = [bytes(r[0]) for r in raw.execute(query)]  # type: ignore[attr-defined]
    finally:
        raw.close()
    assert stored
    with deployment.db.session() as s:
        for face_id, sealed in stored:
            face = s.get(Face, face_id)
            assert face is not None
            plain = faces.open_embedding(deployment.keys.embeddings, face).tobytes()
            assert bytes(sealed).startswith(b"FSE1") and plain not in bytes(sealed)
    assert secrets and all(v.startswith(b"FSE1") for v in secrets)
    assert not any(a.admin.totp_secret.encode() in v for v in secrets)
    blobs = [p for p in deployment.settings.blobs_dir.rglob("*") if p.is_file()]
    assert blobs and not any(b"\xff\xd8\xff" in p.read_bytes()[:64] for p in blobs)
