"""Background ingest for the API: uploads and server-side folders, with readable progress.

An upload is written to a private temporary folder inside the data directory
(`<home>/uploads/task-<id>-*`, mode 0700), each file sealed with the blobs key (AES-256-GCM,
bound to its staged name: no plaintext photo waits on disk, ADR 0010), ingested there by
`FolderIngest` in a background thread, and deleted afterwards whatever the outcome. The
provenance of each uploaded file is rewritten from the temporary path to
`upload:<task id>/<original file name>`.

A server-side folder job (organisation administrators only) may read only below the
organisation's drop folder `<home>/imports/org<id>/`: an administrator of one tenant can never make
the server read another tenant's files or anything else on the machine.

Jobs run one at a time on one worker thread (the face model is shared with searches). The queue
is bounded: an organisation may have `ingest_queue_per_org` jobs queued or running (more: 429
with Retry-After), all organisations together `ingest_queue_size` (more: 503), and one upload
request at most `max_request_pixels` pixels by its files' headers (more: 413). Progress
(`files_done` of `files_total`, faces, status) is written to the `ingest_tasks` row as chunks
commit, so any request can read it.

With `job_runner = "procrastinate"` (PostgreSQL only) a job is deferred to the job queue instead
and run by a `facesearch worker` on any host (`ingest.queue_worker`) through the same code
(`run_task`, `run_reembed_job`) writing the same row. Uploads are then staged in the blob store
(each file sealed with the upload key, so every staged blob's content, hence its id, is unique:
deleting it after the job can never delete a kept image of the same photo), and admission counts
the organisation's queued and running rows in the database. A worker killed mid-job leaves its
row `running`; another worker retries the job, which resumes: committed files are skipped, and
a per-job lock (`store.queue.job_lock`) keeps two workers from running one job at once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facesearch.deployment import Deployment
from facesearch.errors import (
    Conflict,
    FacesearchError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
)
from facesearch.ingest.runner import FolderIngest
from facesearch.ingest.walker import (
    MAX_DEPTH,
    FoundFile,
    Refused,
    Tree,
    check_name,
    protected_files,
    upload_aad,
)
from facesearch.security import audit
from facesearch.security.actor import Actor, SystemActor
from facesearch.security.tenancy import managed_collection, org_job, org_of
from facesearch.store import faces as face_queries
from facesearch.store import queue as job_queue
from facesearch.store.base import utcnow
from facesearch.store.gallery import Collection, SourceFile
from facesearch.store.jobs import Job, JobKind, JobStatus
from facesearch.vision.decode import header_pixels
from facesearch.vision.formats import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

MAX_UPLOAD_FILES = 500
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UploadFile:
    filename: str
    data: bytes


def safe_filename(name: str, index: int) -> str:
    base = Path(name or "").name
    base = _SAFE_NAME.sub("_", base).strip("._")[:100] or "file"
    if Path(base).suffix.lower() not in IMAGE_SUFFIXES:
        base += ".upload.jpg"  # every upload is decoded (and rejected with a reason if bad)
    return f"{index:05d}-{base}"


def uploads_root(dep: Deployment) -> Path:
    root = dep.settings.home / "uploads"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def imports_root(dep: Deployment, org_id: int) -> Path:
    return dep.settings.home / "imports" / f"org{org_id}"


def job_view(task: Job) -> dict[str, Any]:
    return {
        "id": task.id,
        "kind": task.kind,
        "status": task.status,
        "collection_id": task.collection_id,
        "files_total": task.files_total,
        "files_done": task.files_done,
        "faces": task.faces,
        "summary": dict(task.summary or {}),
        "error": task.error,
        "created_at": task.created_at.isoformat(),
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
    }


class _TaskProgress:
    """FolderIngest progress written to the task row as chunks commit: files done of total,
    faces, the rates so far and the files rejected so far (with their reasons), so that a
    reader follows the job live (`job_events`). A job that resumes (its first worker died)
    counts the faces its earlier runs committed too."""

    def __init__(
        self, dep: Deployment, task_id: int, run_of: Callable[[], int | None] | None = None
    ) -> None:
        self.dep = dep
        self.task_id = task_id
        self.run_of = run_of
        self.total = 0
        self.done = 0
        self.faces = 0
        self.runs: list[int] = []
        self.started = time.monotonic()
        self.rejections: list[dict[str, str]] = []

    def _write(self) -> None:
        seconds = max(time.monotonic() - self.started, 1e-9)
        with self.dep.db.session() as s:
            task = s.get(Job, self.task_id)
            if task is not None:
                task.files_total = self.total
                task.files_done = self.done
                task.faces = self.faces
                task.summary = {
                    **(task.summary or {}),  # the runs of a resumed job
                    "files_per_s": round(self.done / seconds, 2),
                    "faces_per_s": round(self.faces / seconds, 2),
                    "rejected_files": list(self.rejections),
                }

    def start(self, total: int) -> None:
        self.total = total
        run_id = self.run_of() if self.run_of is not None else None
        if run_id is not None:
            with self.dep.db.session() as s:
                task = s.get(Job, self.task_id)
                if task is not None:
                    earlier = [int(r) for r in (task.summary or {}).get("runs", [])]
                    self.faces = _faces_of_runs(s, earlier)
                    self.runs = [*earlier, run_id]
                    task.summary = {**(task.summary or {}), "runs": self.runs}
        self.started = time.monotonic()
        self._write()

    def advance(self, files: int, faces: int) -> None:
        self.done += files
        self.faces += faces
        self._write()

    def rejected(self, source: str, reason: str) -> None:
        # kept until the next `advance` writes the row (the ingest may hold a transaction now)
        self.rejections.append({"path": source, "reason": reason})


def _faces_of_runs(session: Session, runs: list[int]) -> int:
    if not runs:
        return 0
    return int(
        session.scalar(
            select(func.coalesce(func.sum(SourceFile.face_count), 0)).where(
                SourceFile.job_id.in_(runs)
            )
        )
        or 0
    )


class JobRunner:
    """One worker thread per deployment running queued ingest tasks in order."""

    def __init__(self, dep: Deployment, workers: int = 1) -> None:
        self.dep = dep
        self.workers = workers
        self._queue: queue.Queue[tuple[int, Callable[[], None]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._per_org: dict[int, int] = {}  # jobs queued or running, by organisation

    def admit(self, org_id: int) -> None:
        """Refuse a new job of `org_id` when it holds its share of the queue (429) or the queue
        is full (503)."""
        settings = self.dep.settings
        with self._lock:
            if self._per_org.get(org_id, 0) >= settings.ingest_queue_per_org:
                raise TooManyRequests(60)
            if sum(self._per_org.values()) >= settings.ingest_queue_size:
                raise Unavailable(60)

    def submit(
        self, task_id: int, folder: Path | Tree, *, temporary: bool, org_id: int | None = None
    ) -> None:
        """Queue the ingest of a folder (deleted afterwards when `temporary`)."""

        def work() -> None:
            try:
                run_task(self.dep, task_id, folder, workers=self.workers)
            finally:
                if temporary and isinstance(folder, Path):
                    shutil.rmtree(folder, ignore_errors=True)

        self.submit_work(task_id, work, org_id=org_id)

    def submit_work(
        self, task_id: int, work: Callable[[], None], *, org_id: int | None = None
    ) -> None:
        """Queue any job's work; the worker thread runs one job at a time, in order."""
        with self._lock:
            self._idle.clear()
            if org_id is not None:
                self._per_org[org_id] = self._per_org.get(org_id, 0) + 1

            def counted() -> None:
                try:
                    work()
                finally:
                    if org_id is not None:
                        with self._lock:
                            left = self._per_org.get(org_id, 0) - 1
                            if left > 0:
                                self._per_org[org_id] = left
                            else:
                                self._per_org.pop(org_id, None)

            self._queue.put((task_id, counted))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="facesearch-ingest", daemon=True
                )
                self._thread.start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted task has finished (tests, shutdown)."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join(timeout=60)
            self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            task_id, work = item
            try:
                work()
            except Exception:  # pragma: no cover - the work records its own failures
                log.exception("job %s failed", task_id)
            finally:
                with self._lock:
                    if self._queue.empty():
                        self._idle.set()


_RUNNERS: dict[int, JobRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(dep: Deployment) -> JobRunner:
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(id(dep))
        if runner is None or runner.dep is not dep:
            runner = _RUNNERS[id(dep)] = JobRunner(dep)
        return runner


def run_task(dep: Deployment, task_id: int, folder: Path | Tree, *, workers: int = 1) -> None:
    """Run one task to its end, recording the outcome on its row (never raises). A task whose
    earlier run was cut short (its worker died) resumes: committed files are skipped."""
    with dep.db.session() as s:
        task = s.get(Job, task_id)
        if task is None or task.collection_id is None:
            return
        collection = s.get(Collection, task.collection_id)
        if collection is None:
            task.status, task.error = JobStatus.FAILED, "collection deleted"
            task.finished_at = utcnow()
            return
        task.status = JobStatus.RUNNING
        collection_id, kind = collection.id, task.kind
    upload = kind == JobKind.UPLOAD
    ingest = FolderIngest(
        dep,
        collection_id,
        workers=workers,
        sealed=upload,  # staged uploads are sealed (ADR 0010)
        provenance=(lambda found: upload_source(found, task_id)) if upload else None,
        source_kind="upload" if upload else "file",
    )
    progress = _TaskProgress(dep, task_id, lambda: ingest.run_id)
    ingest.progress = progress
    status, error = JobStatus.FAILED, None
    summary: dict[str, Any] = {}
    try:
        result = ingest.run(folder)
        summary = result.as_dict()
        status = JobStatus.DONE
    except FacesearchError as exc:
        error = str(exc)
    except Refused as exc:
        error = f"{_label(folder)}: {exc.strerror}"
    except FileNotFoundError:
        error = f"{_label(folder)}: the folder is gone"
    except Exception:
        log.exception("ingest task %s failed", task_id)
        error = "internal error while ingesting; see the server log"
    with dep.db.session() as s:
        task = s.get(Job, task_id)
        if task is not None:
            if progress.runs:
                summary["runs"] = progress.runs
            task.status = status
            task.error = error
            task.summary = summary or {"rejected_files": list(progress.rejections)}
            task.files_total = progress.total
            task.files_done = progress.done
            task.faces = progress.faces
            task.ingest_job_id = int(summary["job_id"]) if "job_id" in summary else None
            task.finished_at = utcnow()


def _label(folder: Path | Tree) -> str:
    return folder.label if isinstance(folder, Tree) else "the upload"


def upload_source(found: FoundFile, task_id: int) -> str:
    """The provenance of a staged upload: `upload:<task id>/<original file name>`."""
    name = found.parts[-1].split("-", 1)[-1].removesuffix(".upload.jpg")
    return f"upload:{task_id}/{name}"


# -- requests -------------------------------------------------------------------------------------
def new_job(
    session: Session,
    actor: Actor,
    org_id: int,
    collection_id: int,
    kind: JobKind,
    *,
    files_total: int = 0,
) -> Job:
    """A queued job row of the organisation (flushed, so it has its id)."""
    task = Job(
        org_id=org_id,
        user_id=actor.user_id,
        api_key_id=actor.api_key_id,
        collection_id=collection_id,
        kind=kind,
        status=JobStatus.QUEUED,
        files_total=files_total,
        summary={},
    )
    session.add(task)
    session.flush()
    return task


def start_upload(
    dep: Deployment,
    session: Session,
    actor: Actor,
    collection_id: int,
    files: list[UploadFile],
    *,
    runner: JobRunner | None = None,
) -> dict[str, Any]:
    """Store the uploaded files in a private temporary folder and queue their ingest."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    files = [f for f in files if f.data]
    if not files:
        raise InvalidRequest("upload at least one non-empty image file", field="files")
    if len(files) > MAX_UPLOAD_FILES:
        raise InvalidRequest(f"at most {MAX_UPLOAD_FILES} files per upload", field="files")
    pixels = sum(header_pixels(f.data) for f in files)
    if pixels > dep.settings.max_request_pixels:
        raise PayloadTooLarge(
            f"the files hold {pixels} pixels; one request may bring at most "
            f"{dep.settings.max_request_pixels}"
        )
    if _queued(dep, runner):
        return _queue_upload(dep, session, actor, org_id, collection.id, files)
    runner = runner or runner_for(dep)
    runner.admit(org_id)
    task = new_job(session, actor, org_id, collection.id, JobKind.UPLOAD, files_total=len(files))
    folder = Path(tempfile.mkdtemp(prefix=f"task-{task.id}-", dir=uploads_root(dep)))
    try:
        for i, f in enumerate(files):  # sealed while staged: no plaintext photo on disk
            name = safe_filename(f.filename, i)
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(dep.keys.blobs.seal(f.data, upload_aad(name)))
        _audit_upload(session, actor, task.id, collection.id, files)
        session.commit()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    runner.submit(task.id, folder, temporary=True, org_id=org_id)
    return job_view(task)


def _audit_upload(
    session: Session, actor: Actor, task_id: int, collection_id: int, files: list[UploadFile]
) -> None:
    audit.record_for(
        session,
        actor,
        "ingest.started",
        target_type="job",
        target_id=task_id,
        details={
            "kind": "upload",
            "collection_id": collection_id,
            "files": len(files),
            "bytes": sum(len(f.data) for f in files),
        },
    )


# -- the job queue (job_runner = procrastinate) ---------------------------------------------------
def _queued(dep: Deployment, runner: JobRunner | None) -> bool:
    """Whether a new job goes to the job queue (not to an in-process runner given by a test)."""
    return runner is None and dep.settings.uses_job_queue


def _admit_queued(dep: Deployment, session: Session, org_id: int) -> None:
    """The in-process runner's admission, counted on the jobs table (every server process and
    worker sees the same): 429 over the organisation's share, 503 over the queue's size."""
    active = Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))
    mine = session.scalar(select(func.count(Job.id)).where(active, Job.org_id == org_id)) or 0
    if mine >= dep.settings.ingest_queue_per_org:
        raise TooManyRequests(60)
    if (session.scalar(select(func.count(Job.id)).where(active)) or 0) >= (
        dep.settings.ingest_queue_size
    ):
        raise Unavailable(60)


#: what a staged upload blob holds: this prefix, the staged file name, NUL, then the file sealed
#: with the upload key (bound to that name). Job arguments carry only blob ids: no file name
#: reaches the queue's tables or a worker's log.
STAGED_PREFIX = b"facesearch/staged-upload/v1\x00"


def _queue_upload(
    dep: Deployment,
    session: Session,
    actor: Actor,
    org_id: int,
    collection_id: int,
    files: list[UploadFile],
) -> dict[str, Any]:
    """Stage the files in the blob store (which every worker reaches) and defer the job."""
    _admit_queued(dep, session, org_id)
    task = new_job(session, actor, org_id, collection_id, JobKind.UPLOAD, files_total=len(files))
    staged: list[str] = []
    try:
        for i, f in enumerate(files):
            name = safe_filename(f.filename, i)
            sealed = dep.keys.blobs.seal(f.data, upload_aad(name))  # a fresh nonce: a unique blob
            staged.append(dep.blobs.put(STAGED_PREFIX + name.encode() + b"\x00" + sealed))
        _audit_upload(session, actor, task.id, collection_id, files)
        session.commit()
    except BaseException:
        delete_staged(dep, staged)
        raise
    _defer(dep, task.id, {"kind": "upload", "staged": staged})
    return job_view(task)


def _defer(dep: Deployment, task_id: int, spec: dict[str, Any]) -> None:
    try:
        job_queue.defer(
            dep.job_queue(),
            dep.settings.job_queue,
            job_queue.TASK_RUN_JOB,
            task_id=task_id,
            spec=spec,
        )
    except Exception:
        log.exception("job %s could not be queued", task_id)
        with dep.db.session() as s:
            task = s.get(Job, task_id)
            if task is not None:
                task.status, task.error = JobStatus.FAILED, "the job queue is unreachable"
                task.finished_at = utcnow()
        delete_staged(dep, spec.get("staged", []))
        raise Unavailable(30) from None


def delete_staged(dep: Deployment, staged: list[str]) -> None:
    """Delete an upload's staged blobs, never one that a face crop or a kept image uses."""
    with dep.db.session() as s:
        for blob in staged:
            if not face_queries.blob_in_use(s, blob):
                dep.blobs.delete(blob)


def stage_upload(dep: Deployment, task_id: int, staged: list[str]) -> Path:
    """The staged blobs of an upload as a private local folder of sealed files, for a worker."""
    folder = Path(tempfile.mkdtemp(prefix=f"task-{task_id}-", dir=uploads_root(dep)))
    try:
        for blob in staged:
            data = dep.blobs.get(blob)
            if not data.startswith(STAGED_PREFIX):
                raise ValueError("not a staged upload")
            raw_name, _, sealed = data[len(STAGED_PREFIX) :].partition(b"\x00")
            name = raw_name.decode()
            check_name(name)
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(sealed)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def run_queued(
    dep: Deployment, task_id: int, spec: dict[str, Any], *, workers: int = 1, attempt: int = 1
) -> None:
    """Run a job taken from the job queue (in a `facesearch worker`), to its end, recording
    the outcome on its row. One worker at a time runs a job (a lock per job, released when the
    worker's connection goes, even by kill -9); a job found finished is not run again."""
    with job_queue.job_lock(dep.db.engine, task_id):
        with dep.db.session() as s:
            task = s.get(Job, task_id)
            finished = task is None or task.status in (JobStatus.DONE, JobStatus.FAILED)
            org_id = task.org_id if task is not None else None
        kind = spec.get("kind")
        if finished:
            pass
        elif kind == "folder" and org_id is not None:
            try:
                tree = drop_tree(dep, org_id, str(spec.get("folder", ".")))
            except FacesearchError as exc:
                _fail(dep, task_id, str(exc))
            else:
                run_task(dep, task_id, tree, workers=workers)
        elif kind == "upload":
            try:
                folder = stage_upload(dep, task_id, spec.get("staged", []))
            except (OSError, ValueError):
                _fail(dep, task_id, "the staged upload is gone or damaged")
            else:
                try:
                    run_task(dep, task_id, folder, workers=workers)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
        elif kind == "reembed":
            run_reembed_job(dep, task_id, str(spec.get("model")), workers=workers)
        else:
            _fail(dep, task_id, f"unknown job kind {kind!r}")
        if kind == "upload":
            delete_staged(dep, spec.get("staged", []))  # the job is finished either way
        if attempt > 1 and not finished:
            with dep.db.session() as s:
                task = s.get(Job, task_id)
                if task is not None:
                    task.summary = {**(task.summary or {}), "attempts": attempt}


def _fail(dep: Deployment, task_id: int, error: str) -> None:
    with dep.db.session() as s:
        task = s.get(Job, task_id)
        if task is not None:
            task.status, task.error, task.finished_at = JobStatus.FAILED, error, utcnow()


def drop_tree(dep: Deployment, org_id: int, folder: str) -> Tree:
    """The organisation's drop folder `<home>/imports/org<id>/<folder>` as a Tree: anchored at the
    data directory, every component below it opened without following links when the job runs
    (not only now), sources named relative to the drop root. `folder` is relative to the drop
    root (an absolute path is accepted when it names a place below it)."""
    root = imports_root(dep, org_id)
    outside = InvalidRequest(
        "server folders must lie below this organisation's drop folder; give a path relative to it",
        field="folder",
    )
    if "\x00" in folder:
        raise InvalidRequest("the folder name holds a NUL character", field="folder")
    path = PurePosixPath(folder or ".")
    if path.is_absolute():
        norm = PurePosixPath(os.path.normpath(str(path)))
        for base in (root, root.resolve()):
            try:
                path = norm.relative_to(PurePosixPath(base))
                break
            except ValueError:
                continue
        else:
            raise outside
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if len(parts) > MAX_DEPTH:
        raise InvalidRequest("the folder is nested too deeply", field="folder")
    for part in parts:
        try:
            check_name(part)
        except ValueError as exc:
            if ".." in part:
                raise outside from None
            raise InvalidRequest(str(exc), field="folder") from None
    settings = dep.settings
    return Tree(
        settings.home,
        ("imports", f"org{org_id}", *parts),
        display_from=2,
        protected=protected_files(settings.db_path, settings.settings_file, dep.key_file),
    )


def start_folder(
    dep: Deployment,
    session: Session,
    actor: Actor,
    collection_id: int,
    folder: str,
    *,
    runner: JobRunner | None = None,
) -> dict[str, Any]:
    """Queue the ingest of a folder on the server, below the organisation's drop folder. The
    folder is checked now for a quick answer, and again, component by component, when the job
    runs (see `ingest.walker`)."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    tree = drop_tree(dep, org_id, folder)
    queued = _queued(dep, runner)
    if queued:
        _admit_queued(dep, session, org_id)
    else:
        runner = runner or runner_for(dep)
        runner.admit(org_id)
    try:
        tree.exists()
    except Refused as exc:
        raise InvalidRequest(
            f"{tree.label} (below the drop folder): {exc.strerror}", field="folder"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise NotFound(f"no folder {tree.label} below the organisation's drop folder") from None
        raise InvalidRequest(
            f"{tree.label} (below the drop folder) cannot be opened: {exc.strerror}",
            field="folder",
        ) from None
    task = new_job(session, actor, org_id, collection.id, JobKind.FOLDER)
    audit.record_for(
        session,
        actor,
        "ingest.started",
        target_type="job",
        target_id=task.id,
        details={"kind": "folder", "collection_id": collection.id, "folder": tree.label},
    )
    session.commit()
    if queued:
        _defer(dep, task.id, {"kind": "folder", "folder": folder})
    else:
        assert runner is not None
        runner.submit(task.id, tree, temporary=False, org_id=org_id)
    return job_view(task)


def get_job(session: Session, actor: Actor, job_id: int) -> dict[str, Any]:
    return job_view(org_job(session, org_of(actor), job_id))


#: How long one event stream of a job lasts at most (the browser's EventSource reconnects).
EVENTS_LIFETIME_S = 300.0
#: How often a stream reads the job's row, and how often it proves it is alive.
EVENTS_POLL_S = 0.25
EVENTS_HEARTBEAT_S = 15.0
FINAL = (JobStatus.DONE, JobStatus.FAILED)


def _event(name: str, data: dict[str, Any], event_id: int) -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def job_events(
    dep: Deployment,
    session: Session,
    actor: Actor,
    job_id: int,
    render: Callable[[dict[str, Any]], dict[str, Any]] = lambda data: data,
    *,
    lifetime_s: float = EVENTS_LIFETIME_S,
    poll_s: float = EVENTS_POLL_S,
) -> Iterator[str]:
    """A job's progress as server-sent events (text/event-stream): a `progress` event whenever
    the job's row changes (status, files done of total, faces, files/s, faces/s, the rejected
    files with their reasons), then `end` with the final job once it is done or failed. The
    organisation's own jobs only (NotFound now, before the stream starts, for anyone else's).
    A stream lasts at most `lifetime_s`; it then ends with `retry` advice, and the browser's
    EventSource reconnects. `render` turns an event's data into what the caller shows (the API:
    its response model, with opaque ids)."""
    task = org_job(session, org_of(actor), job_id)
    first = job_view(task)
    task_id = task.id

    def stream() -> Iterator[str]:
        yield "retry: 2000\n\n"
        deadline = time.monotonic() + lifetime_s
        last: dict[str, Any] | None = None
        beat = time.monotonic()
        seq = 0
        view = first
        while True:
            if view != last:
                seq += 1
                final = view["status"] in FINAL
                yield _event("end" if final else "progress", render(_progress(view)), seq)
                if final:
                    return
                last = view
                beat = time.monotonic()
            now = time.monotonic()
            if now >= deadline:
                return
            if now - beat >= EVENTS_HEARTBEAT_S:
                yield ": alive\n\n"
                beat = now
            time.sleep(poll_s)
            with dep.db.session() as s:
                row = s.get(Job, task_id)
                if row is None:  # its organisation or collection went away
                    seq += 1
                    yield _event(
                        "end", render({**_progress(view), "status": JobStatus.FAILED}), seq
                    )
                    return
                view = job_view(row)

    return stream()


def _progress(view: dict[str, Any]) -> dict[str, Any]:
    summary = view.get("summary") or {}
    return {
        **view,
        "files_per_s": summary.get("files_per_s"),
        "faces_per_s": summary.get("faces_per_s"),
        "rejected_files": summary.get("rejected_files", []),
    }


def list_jobs(session: Session, actor: Actor, *, limit: int = 100) -> dict[str, Any]:
    org_id = org_of(actor)
    rows = session.scalars(
        select(Job).where(Job.org_id == org_id).order_by(Job.id.desc()).limit(limit)
    )
    total = session.scalar(select(func.count(Job.id)).where(Job.org_id == org_id)) or 0
    return {"total": int(total), "items": [job_view(t) for t in rows]}


def run_reembed_job(dep: Deployment, job_id: int, model: str, *, workers: int = 1) -> None:
    """Run a re-embed job to its end, recording the outcome on its row (never raises)."""
    from facesearch.ingest.reembed import Reembed

    with dep.db.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.collection_id is None:
            return
        job.status = JobStatus.RUNNING
        collection_id = job.collection_id
        actor = SystemActor(
            user_id=job.user_id, org_id=job.org_id, api_key_id=job.api_key_id, ip=None
        )
    progress = _TaskProgress(dep, job_id)
    status, error, summary = JobStatus.FAILED, None, {}
    try:
        result = Reembed(
            dep, collection_id, model, actor=actor, workers=workers, progress=progress
        ).run()
        summary, status = result.as_dict(), JobStatus.DONE
    except FacesearchError as exc:
        error = str(exc)
    except Exception:
        log.exception("re-embed job %s failed", job_id)
        error = "internal error while re-embedding; see the server log"
    with dep.db.session() as s:
        job = s.get(Job, job_id)
        if job is not None:
            job.status, job.error, job.summary = status, error, summary
            job.files_total, job.files_done = progress.total, progress.done
            job.faces = int(summary.get("faces", progress.faces))
            job.finished_at = utcnow()


def start_reembed(
    dep: Deployment,
    session: Session,
    actor: Actor,
    collection_id: int,
    model: str | None,
    *,
    runner: JobRunner | None = None,
) -> dict[str, Any]:
    """Queue the move of one of the organisation's collections to another model."""
    from facesearch.gallery.collections import model_id_for

    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    target = model_id_for(dep, model)
    if collection.model_id == target:
        raise Conflict(f"the collection already holds {target} embeddings")
    busy = session.scalar(
        select(Job.id).where(
            Job.collection_id == collection.id,
            Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
        )
    )
    if busy is not None:
        raise Conflict(f"job {busy} is still working on this collection; wait for it")
    queued = _queued(dep, runner)
    if queued:
        _admit_queued(dep, session, org_id)
    else:
        runner = runner or runner_for(dep)
        runner.admit(org_id)
    task = new_job(session, actor, org_id, collection.id, JobKind.REEMBED)
    audit.record_for(
        session,
        actor,
        "reembed.started",
        target_type="job",
        target_id=task.id,
        details={
            "collection_id": collection.id,
            "from_model": collection.model_id,
            "to_model": target,
        },
    )
    session.commit()
    job_id = task.id
    if queued:
        _defer(dep, job_id, {"kind": "reembed", "model": target_name(target)})
        return job_view(task)
    assert runner is not None
    runner.submit_work(
        job_id, lambda: run_reembed_job(dep, job_id, target_name(target)), org_id=org_id
    )
    return job_view(task)


def target_name(model_id: str) -> str:
    from facesearch.vision.registry import RUNTIME_FOR_ID

    return RUNTIME_FOR_ID[model_id]
