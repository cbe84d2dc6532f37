"""Issue 10, part 4: ingest jobs through the PostgreSQL job queue, run by `facesearch worker`
processes (real OS processes on the private test cluster, tests/pg.py).

- two workers on one folder job (delivered twice) and a second job on the same folder store
  exactly the faces of one in-process ingest: the same (file, box) rows, none twice;
- a worker killed with -9 mid-job: another worker notices the silence, retries the job, resumes
  it, and the faces are exact; progress, summary and failures read through the API's job
  endpoint;
- an upload is staged in the blob store and cleaned up afterwards without touching a kept image
  of the same photo; a search in the serving process finds faces a worker committed;
- a re-embed job runs on a worker, and the service's searches use the new model's faces;
- face ids commit in order, so the service's catch-up never misses a face committed late;
- the queue runner needs PostgreSQL, and `facesearch worker` refuses an in-process deployment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from facesearch.cli import app
from facesearch.deployment import Deployment
from facesearch.errors import ConfigError
from facesearch.ingest import jobs
from facesearch.ingest.runner import FolderIngest
from facesearch.search.engine import SearchEngine
from facesearch.store import faces as face_queries
from facesearch.store import queue
from facesearch.store.gallery import Face, SourceFile, embedding_aad
from facesearch.store.jobs import Job
from tests import pg
from tests.api.casework_world import PURPOSE, gallery, probe_bytes
from tests.api.conftest import MakeUser, api_id, db_id, make_app, new_deployment, user_factory
from tests.conftest import REPO_ROOT, faces_dir

LEGAL = "Police Act s.64A: custody images of arrested persons"
#: fast heartbeats so that a killed worker is noticed within seconds
QUEUE_SETTINGS: dict[str, Any] = {
    "job_runner": "procrastinate",
    "workers": 1,
    "onnx_threads": 1,
    "worker_heartbeat_seconds": 1.0,
    "worker_stalled_seconds": 4.0,
}
PHOTOS = [
    ("barack_obama", "obama1.jpg"),
    ("barack_obama", "obama2.jpg"),
    ("eric_clapton", "clapton-2.jpg"),
    ("guido_van_rossum", "guido_van_rossum2.jpg"),
    ("guido_van_rossum", "guido_van_rossum4.jpg"),
    ("john_lennon", "lennon-2.jpg"),
    ("paul_allen", "paul_allen.jpg"),
    ("rose_leslie", "img1.jpg"),
    ("steve_wozniak", "steve_wozniak3.jpg"),
    ("steve_wozniak", "test_steve_wozniak.jpg"),
    ("amy_adams", "adams.jpg"),
]


class World:
    def __init__(self, dep: Deployment, url: str, make_user: MakeUser) -> None:
        self.dep = dep
        self.url = url
        self.make_user = make_user
        self.admin = make_user("Org Q", ["org_admin"])
        assert self.admin.org_id is not None
        self.org_id: int = self.admin.org_id
        self.workers: list[subprocess.Popen[bytes]] = []
        self.drop = jobs.imports_root(dep, self.org_id)
        self.drop.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.n = 0

    # -- the deployment's parts ---------------------------------------------------------------
    def collection(self) -> int:
        self.n += 1
        reply = self.admin.client.post(
            "/api/v1/collections",
            json={"name": f"q{self.n}", "legal_basis": LEGAL, "retention_days": 30},
        )
        assert reply.status_code == 201, reply.text
        return db_id(self.dep, "collection", reply.json()["id"])

    def folder(self, name: str, photos: list[tuple[str, str]], *, broken: bool = False) -> str:
        target = self.drop / name
        target.mkdir()
        for person, photo in photos:
            shutil.copy(faces_dir("small", person) / photo, target / f"{person}-{photo}")
        if broken:
            (target / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        return name

    def folder_job(self, cid: int, folder: str) -> int:
        reply = self.admin.client.post(
            f"/api/v1/collections/{api_id(self.dep, 'collection', cid)}/folder-jobs",
            json={"folder": folder},
        )
        assert reply.status_code == 202, reply.text
        return db_id(self.dep, "job", reply.json()["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        reply = self.admin.client.get(f"/api/v1/jobs/{api_id(self.dep, 'job', job_id)}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def wait(self, job_id: int, timeout: float = 240.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.job(job_id)
            if view["status"] in ("done", "failed"):
                return view
            self.check_workers()
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish: {self.job(job_id)}")

    def faces(self, cid: int) -> Counter[tuple[str, int, int, int, int]]:
        with self.dep.db.session() as s:
            rows = s.execute(
                select(SourceFile.source, Face.left, Face.top, Face.right, Face.bottom)
                .join(Face, Face.file_id == SourceFile.id)
                .where(SourceFile.collection_id == cid)
            ).all()
        return Counter((str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows)

    def reference(self, folder: str) -> Counter[tuple[str, int, int, int, int]]:
        """The faces one in-process ingest of the drop folder stores."""
        cid = self.collection()
        FolderIngest(self.dep, cid, workers=1).run(jobs.drop_tree(self.dep, self.org_id, folder))
        return self.faces(cid)

    # -- worker processes -----------------------------------------------------------------------
    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        settings = self.dep.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["FACESEARCH_DATABASE_URL"] = self.url
        for key, value in QUEUE_SETTINGS.items():
            env[f"FACESEARCH_{key.upper()}"] = str(value)
        log = (settings.home.parent / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facesearch",
                "--home",
                str(settings.home),
                "--key-file",
                str(self.dep.key_file),
                "worker",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.workers.append(proc)
        return proc

    def check_workers(self) -> None:
        for proc in self.workers:
            code = proc.poll()
            if code is not None and code not in (-signal.SIGKILL, 0, -signal.SIGTERM):
                logs = "\n".join(
                    p.read_text()[-3000:] for p in self.dep.settings.home.parent.glob("*.log")
                )
                raise AssertionError(f"a worker exited with {code}:\n{logs}")

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers = []


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    url = pg.create_database()
    dep = new_deployment(tmp_path, database_url=url, **QUEUE_SETTINGS)
    w = World(dep, url, user_factory(dep, make_app(dep)))
    try:
        yield w
    finally:
        w.stop_workers()
        dep.close()
        pg.drop_database(url)


@pytest.mark.sqlite_only  # the deployment under test must not be on PostgreSQL
def test_the_queue_runner_needs_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        new_deployment(tmp_path, job_runner="procrastinate")


def test_worker_refuses_a_deployment_that_runs_its_jobs_in_process(tmp_path: Path) -> None:
    base = ["--home", str(tmp_path / "home"), "--key-file", str(tmp_path / "k.key")]
    runner = CliRunner()
    assert runner.invoke(app, [*base, "init"]).exit_code == 0
    result = runner.invoke(app, [*base, "worker", "--concurrency", "2"])
    assert isinstance(result.exception, ConfigError), result.output
    assert "job_runner = procrastinate" in str(result.exception)


def test_two_workers_on_one_job_and_one_folder_store_the_faces_once(world: World) -> None:
    folder = world.folder("batch", PHOTOS[:8])
    expected = world.reference(folder)
    assert sum(expected.values()) >= 8
    cid = world.collection()
    # two jobs on the same folder and collection, taken by the two workers at once, and the
    # first job delivered a second time (as the retry of a worker thought dead would be)
    first = world.folder_job(cid, folder)
    second = world.folder_job(cid, folder)
    queue.defer(
        world.dep.job_queue(),
        world.dep.settings.job_queue,
        queue.TASK_RUN_JOB,
        task_id=first,
        spec={"kind": "folder", "folder": folder},
    )
    world.start_worker("w1")
    world.start_worker("w2")
    done = [world.wait(first), world.wait(second)]
    assert [v["status"] for v in done] == ["done", "done"], done
    got = world.faces(cid)
    assert got == expected  # the same (file, box) rows
    assert max(got.values()) == 1  # none twice
    with world.dep.db.session() as s:
        files = s.scalars(select(SourceFile.source).where(SourceFile.collection_id == cid)).all()
    assert len(files) == len(set(files)) == len(PHOTOS[:8])
    # what one job stored, the other counted as already there
    summaries = [v["summary"] for v in done]
    assert sum(int(x["ok"]) + int(x["no_face"]) for x in summaries) == len(PHOTOS[:8])
    assert sum(v["faces"] for v in done) == sum(expected.values())


def test_a_killed_worker_s_job_is_resumed_by_another_exactly(world: World) -> None:
    folder = world.folder("big", PHOTOS, broken=True)
    expected = world.reference(folder)
    cid = world.collection()
    job_id = world.folder_job(cid, folder)
    assert world.job(job_id)["status"] == "queued"
    victim = world.start_worker("victim")
    deadline = time.monotonic() + 180
    while True:  # kill it once it has committed part of the job
        view = world.job(job_id)
        if view["status"] == "running" and 0 < view["files_done"] < view["files_total"]:
            break
        assert view["status"] in ("queued", "running"), view
        assert time.monotonic() < deadline, view
        world.check_workers()
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    partial = world.faces(cid)
    assert 0 < sum(partial.values()) < sum(expected.values())
    assert world.job(job_id)["status"] == "running"  # the row shows what was done
    world.start_worker("rescuer")
    view = world.wait(job_id)
    assert view["status"] == "done", view
    got = world.faces(cid)
    assert got == expected and max(got.values()) == 1
    # progress, summary and failures as the API shows them
    total = len(PHOTOS) + 1
    assert view["files_total"] == view["files_done"] == total
    assert view["faces"] == sum(expected.values())
    summary = view["summary"]
    assert summary["attempts"] == 2 and len(summary["runs"]) == 2
    assert summary["skipped_already_ingested"] > 0
    assert [r["path"] for r in summary["rejected_files"]] == ["big/zz-broken.jpg"]
    # a job that fails shows why
    gone = world.folder("gone", PHOTOS[:1])
    failing = world.folder_job(cid, gone)
    shutil.rmtree(world.drop / gone)
    view = world.wait(failing)
    assert view["status"] == "failed" and "gone" in (view["error"] or ""), view
    with world.dep.db.session() as s:
        assert s.get(Job, failing) is not None


def test_uploads_are_staged_in_the_blob_store_and_searches_see_worker_faces(
    world: World,
) -> None:
    dep = world.dep
    photo = faces_dir("small", "barack_obama") / "obama1.jpg"
    other = faces_dir("small", "john_lennon") / "lennon-2.jpg"
    kept_cid = world.collection()
    kept = world.folder("kept", [("barack_obama", "obama1.jpg")])
    FolderIngest(dep, kept_cid, workers=1).run(jobs.drop_tree(dep, world.org_id, kept))
    with dep.db.session() as s:
        kept_blob = s.scalar(
            select(SourceFile.image_blob).where(SourceFile.collection_id == kept_cid)
        )
    assert kept_blob is not None and dep.blobs.get(kept_blob) == photo.read_bytes()
    cid = world.collection()
    model_id = dep.default_model_id
    assert dep.index_for(model_id).state(cid).count == 0  # the server's index, loaded before
    blobs_before = set(dep.blobs.ids())
    reply = world.admin.client.post(
        f"/api/v1/collections/{api_id(dep, 'collection', cid)}/uploads",
        files=[
            ("files", ("obama.jpg", photo.read_bytes(), "image/jpeg")),
            ("files", ("lennon.jpg", other.read_bytes(), "image/jpeg")),
        ],
    )
    assert reply.status_code == 202, reply.text
    job_id = db_id(dep, "job", reply.json()["id"])
    staged = set(dep.blobs.ids()) - blobs_before
    assert len(staged) == 2  # staged in the blob store, not on the server's disk
    assert not any((dep.settings.home / "uploads").glob("task-*"))
    world.start_worker("w1")
    view = world.wait(job_id)
    assert view["status"] == "done" and view["faces"] >= 2, view
    assert not staged & set(dep.blobs.ids())  # cleaned up ...
    assert dep.blobs.get(kept_blob) == photo.read_bytes()  # ... and the kept image survives
    with dep.db.session() as s:
        new_kept = s.scalars(select(SourceFile.image_blob).where(SourceFile.collection_id == cid))
        assert kept_blob in set(new_kept)  # the uploaded copy is the same blob as the kept one
    jobs.delete_staged(dep, [kept_blob])  # a staging clean-up never deletes a blob in use
    assert dep.blobs.get(kept_blob) == photo.read_bytes()
    with dep.db.session() as s:
        sources = sorted(
            s.scalars(select(SourceFile.source).where(SourceFile.collection_id == cid))
        )
    assert sources == [f"upload:{job_id}/lennon.jpg", f"upload:{job_id}/obama.jpg"]
    # the serving process catches up with what the worker committed
    result = SearchEngine(dep).search(photo.read_bytes(), collection_ids=[cid])
    assert dep.index_for(model_id).state(cid).count == view["faces"]
    best = [c for face in result.faces for c in face.candidates]
    assert best and max(c.score for c in best) > 0.9


def test_the_service_never_misses_a_face_committed_late(world: World) -> None:
    """Face ids are committed in order (one lock for every face insert): a transaction that
    took id N+1 cannot commit before the one holding N, so the service's catch-up from its
    high-water mark never skips a face another worker committed late."""
    dep = world.dep
    cid = world.collection()
    model_id = dep.default_model_id
    index = dep.index_for(model_id)
    dim = index.dim
    rng = np.random.default_rng(1)

    def insert(session: Any, n: int) -> None:
        face_queries.serialise_face_ids(session)
        row = SourceFile(
            collection_id=cid,
            source=f"late/{n}.jpg",
            content_hash=f"{n:064x}",
            byte_size=1,
            status="ok",
            face_count=1,
        )
        session.add(row)
        session.flush()
        vec = rng.standard_normal(dim).astype(np.float32)
        vec /= np.linalg.norm(vec)
        session.add(
            Face(
                file_id=row.id,
                collection_id=cid,
                face_index=0,
                model_id=model_id,
                runtime="test",
                detector="test",
                left=0,
                top=0,
                right=10,
                bottom=10,
                landmarks=[],
                confidence=1.0,
                quality=1.0,
                quality_detail={},
                embedding=dep.keys.embeddings.seal(
                    vec.tobytes(), embedding_aad(row.id, 0, model_id)
                ),
            )
        )
        session.flush()

    first = dep.db._sessions()  # an open transaction: face id N taken, not yet committed
    insert(first, 1)
    second_done = threading.Event()

    def second() -> None:
        with dep.db.session() as s:
            insert(s, 2)
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not second_done.wait(1.0)  # it waits for the first transaction's lock
    assert dep.catch_up(index) == 0
    first.commit()
    first.close()
    thread.join(10)
    assert second_done.is_set()
    dep.index_for(model_id)  # what a search does first
    assert index.state(cid).count == 2


def test_a_reembed_job_runs_on_a_worker_and_the_service_searches_its_faces(
    world: World, tmp_path: Path
) -> None:
    investigator = world.make_user("Org Q", ["investigator"])
    made = world.admin.client.post(
        "/api/v1/collections",
        json={"name": "old", "legal_basis": LEGAL, "retention_days": 30, "model": "dlib"},
    )
    assert made.status_code == 201, made.text
    cid = db_id(world.dep, "collection", made.json()["id"])
    FolderIngest(world.dep, cid, workers=1).run(gallery(tmp_path / "g"))

    def search() -> dict[str, Any]:
        reply = investigator.client.post(
            "/api/v1/searches",
            files={"probe": ("p.jpg", probe_bytes(), "image/jpeg")},
            data={
                "case_number": "2024/91",
                "purpose": PURPOSE,
                "collections": api_id(world.dep, "collection", cid),
            },
        )
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    assert [m["model_id"] for m in search()["models"]] == ["dlib-resnet-v1"]
    search_index = world.dep.index_for("sface-2021dec")  # loaded by the service before the job
    assert search_index.state(cid).count == 0
    job = world.admin.client.post(
        f"/api/v1/collections/{api_id(world.dep, 'collection', cid)}/reembed",
        json={"model": "sface"},
    )
    assert job.status_code == 202, job.text
    world.start_worker("w1")
    done = world.wait(db_id(world.dep, "job", job.json()["id"]))
    assert done["status"] == "done" and done["faces"] == 2, done
    after = search()  # the service catches up with the faces the worker committed
    assert [m["model_id"] for m in after["models"]] == ["sface-2021dec"]
    best = after["faces"][0]["candidates"][0]
    assert best["above_threshold"] and best["model_id"] == "sface-2021dec"
    assert search_index.state(cid).count == 2
