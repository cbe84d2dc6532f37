"""Issue 11, High 1 and High 2: a drop-folder job must never read a file outside the
organisation's drop root, nor any file of the data or key directory, whatever links the folder
holds or however it changes after submission; and reading the database file through a link must
never leave the server writing into a deleted WAL file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from facesearch.deployment import Deployment
from facesearch.ingest import jobs
from facesearch.ingest.jobs import imports_root, runner_for
from facesearch.security.actor import Principal
from facesearch.security.roles import Role, Scope
from facesearch.store.db import connect_sqlite
from facesearch.store.gallery import SourceFile
from tests.api.conftest import MakeUser, api_id, db_id
from tests.conftest import REPO_ROOT, faces_dir

LEGAL = "Police Act s.64A: custody images of arrested persons"


def _collection(client: TestClient, name: str = "drop") -> str:
    reply = client.post(
        "/api/v1/collections", json={"name": name, "legal_basis": LEGAL, "retention_days": 30}
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def _drop(dep: Deployment, org_id: int) -> Path:
    root = imports_root(dep, org_id)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _run_job(client: TestClient, dep: Deployment, cid: str, folder: str) -> dict[str, Any]:
    reply = client.post(f"/api/v1/collections/{cid}/folder-jobs", json={"folder": folder})
    assert reply.status_code == 202, reply.text
    assert runner_for(dep).wait_idle(180)
    job = client.get(f"/api/v1/jobs/{reply.json()['id']}").json()
    assert job["status"] == "done", job
    return dict(job)


def _sources(dep: Deployment, cid: str) -> list[str]:
    collection = db_id(dep, "collection", cid)
    with dep.db.session() as s:
        rows = s.query(SourceFile).filter(SourceFile.collection_id == collection)
        return [r.source for r in rows]


def test_links_in_a_drop_folder_are_never_followed(
    deployment: Deployment, make_user: MakeUser
) -> None:
    a = make_user("Org A", ["org_admin"])
    b = make_user("Org B", ["org_admin"])
    assert a.org_id is not None and b.org_id is not None
    cid = _collection(a.client)
    theirs = _drop(deployment, b.org_id)
    photo = faces_dir("small", "barack_obama") / "obama1.jpg"
    shutil.copy(photo, theirs / "secret.jpg")
    mine = _drop(deployment, a.org_id)
    shutil.copy(photo, mine / "own.jpg")
    settings = deployment.settings
    (mine / "theirs.jpg").symlink_to(theirs / "secret.jpg")
    (mine / "key.jpg").symlink_to(deployment.key_file)
    (mine / "db.jpg").symlink_to(settings.db_path)
    (mine / "passwd.png").symlink_to("/etc/passwd")
    (mine / "their-folder").symlink_to(theirs, target_is_directory=True)
    os.link(theirs / "secret.jpg", mine / "hard.jpg")  # a second name of another tenant's photo
    (mine / "loop.jpg").symlink_to(mine / "loop.jpg")

    job = _run_job(a.client, deployment, cid, ".")
    summary = job["summary"]
    assert summary["ok"] == 1, summary  # own.jpg, and nothing else
    rejected = {r["path"]: r["reason"] for r in summary["rejected_files"]}
    assert set(rejected) == {
        "theirs.jpg",
        "key.jpg",
        "db.jpg",
        "passwd.png",
        "hard.jpg",
        "loop.jpg",
    }, rejected
    for reason in rejected.values():
        assert "link" in reason, rejected  # refused as a link, never opened and decoded
    assert _sources(deployment, cid) == ["own.jpg"]  # relative to the drop root, no server path
    assert str(settings.home) not in str(job)


def test_a_folder_swapped_for_a_link_after_submission_is_not_walked(
    deployment: Deployment, make_user: MakeUser
) -> None:
    a = make_user("Org A", ["org_admin"])
    b = make_user("Org B", ["org_admin"])
    assert a.org_id is not None and b.org_id is not None
    cid = _collection(a.client)
    theirs = _drop(deployment, b.org_id)
    shutil.copy(faces_dir("small", "barack_obama") / "obama1.jpg", theirs / "secret.jpg")
    mine = _drop(deployment, a.org_id)
    (mine / "batch").mkdir()

    submitted: list[tuple[int, Any]] = []

    class Held:
        def admit(self, org_id: int) -> None:
            pass

        def submit(
            self, task_id: int, folder: Any, *, temporary: bool, org_id: int | None = None
        ) -> None:
            submitted.append((task_id, folder))

    actor = Principal(
        a.user_id, a.org_id, frozenset({Role.ORG_ADMIN}), frozenset({Scope.ADMIN}), None, None, None
    )
    with deployment.db.session() as s:
        job = jobs.start_folder(
            deployment,
            s,
            actor,
            db_id(deployment, "collection", cid),
            "batch",
            runner=Held(),  # type: ignore[arg-type]
        )
    (mine / "batch").rename(mine / "batch.old")
    (mine / "batch").symlink_to(theirs, target_is_directory=True)  # swapped after the check
    [(task_id, folder)] = submitted
    jobs.run_task(deployment, task_id, folder)

    view = a.client.get(f"/api/v1/jobs/{api_id(deployment, 'job', job['id'])}").json()
    assert view["status"] == "failed", view
    assert "link" in (view["error"] or ""), view
    assert str(deployment.settings.home) not in str(view)
    assert _sources(deployment, cid) == []


def test_hostile_folder_names_answer_4xx(deployment: Deployment, make_user: MakeUser) -> None:
    a = make_user("Org A", ["org_admin"])
    assert a.org_id is not None
    cid = _collection(a.client)
    mine = _drop(deployment, a.org_id)
    (mine / "loop").symlink_to(mine / "loop")
    home = str(deployment.settings.home)
    for folder in ["with\x00nul", "x" * 300, "loop", "loop/inner", "/etc", "../..", "../org2"]:
        reply = a.client.post(f"/api/v1/collections/{cid}/folder-jobs", json={"folder": folder})
        assert 400 <= reply.status_code < 500, (folder, reply.status_code, reply.text)
        assert home not in reply.text, reply.text
    missing = a.client.post(f"/api/v1/collections/{cid}/folder-jobs", json={"folder": "nope"})
    assert missing.status_code == 404 and home not in missing.text


_COUNT = """
import sys
from pathlib import Path
from facesearch.store.db import connect_sqlite
con = connect_sqlite(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))
print(con.execute("SELECT count(*) FROM audit_log").fetchone()[0])
"""


def _deleted_files_of(home: Path) -> list[str]:
    gone = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith("(deleted)") and str(home) in target:
            gone.append(target)
    return gone


@pytest.mark.sqlite_only  # facesearch.db and its WAL
def test_reading_the_database_through_a_link_loses_no_writes(
    deployment: Deployment, app: FastAPI, make_user: MakeUser
) -> None:
    """The sequence of the review: a folder job meets links to facesearch.db, a CLI command runs
    on the same data home, the server goes on writing; every committed write must be on disk."""
    a = make_user("Org A", ["org_admin"])
    assert a.org_id is not None
    cid = _collection(a.client)
    mine = _drop(deployment, a.org_id)
    db_path = deployment.settings.db_path
    (mine / "db.jpg").symlink_to(db_path)
    os.link(db_path, mine / "db-hard.jpg")
    _run_job(a.client, deployment, cid, ".")

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "facesearch",
            "--home",
            str(deployment.settings.home),
            "--key-file",
            str(deployment.key_file),
            "audit",
            "verify",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr

    # the server goes on: an audited write, committed before the answer
    _collection(a.client, "after-the-cli")
    with deployment.db.session() as s:
        from facesearch.store.audit import AuditEntry

        in_server = s.query(AuditEntry).count()
    on_disk = subprocess.run(
        [sys.executable, "-c", _COUNT, str(db_path), deployment.keys.database_key.hex()],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert int(on_disk.stdout) == in_server, (on_disk.stdout, on_disk.stderr, in_server)
    assert _deleted_files_of(deployment.settings.home) == []
    con = connect_sqlite(db_path, deployment.keys.database_key)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM collections")]
    finally:
        con.close()
    assert any(n.endswith("after-the-cli") for n in names), names
