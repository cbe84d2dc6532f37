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
    Refused,
    Tree,
    check_name,
    protected_files,
    upload_aad,
)
from facesearch.security import audit
from facesearch.security.actor import Actor, SystemActor
from facesearch.security.tenancy import managed_collection, org_job, org_of
from facesearch.store.base import utcnow
from facesearch.store.gallery import Collection, SourceFile
from facesearch.store.jobs import Job, JobKind, JobStatus
from facesearch.vision.decode import IMAGE_SUFFIXES, header_pixels

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
    reader follows the job live (`job_events`)."""

    def __init__(
        self, dep: Deployment, task_id: int, rename: Callable[[str], str] | None = None
    ) -> None:
        self.dep = dep
        self.task_id = task_id
        self.rename = rename or (lambda path: path)
        self.total = 0
        self.done = 0
        self.faces = 0
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
                    "files_per_s": round(self.done / seconds, 2),
                    "faces_per_s": round(self.faces / seconds, 2),
                    "rejected_files": list(self.rejections),
                }

    def start(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self._write()

    def advance(self, files: int, faces: int) -> None:
        self.done += files
        self.faces += faces
        self._write()

    def rejected(self, source: str, reason: str) -> None:
        # kept until the next `advance` writes the row (the ingest may hold a transaction now)
        self.rejections.append({"path": self.rename(source), "reason": reason})


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
    """Run one task to its end, recording the outcome on its row (never raises)."""
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
    progress = _TaskProgress(dep, task_id, _renamer(kind, folder, task_id))
    status, error = JobStatus.FAILED, None
    summary: dict[str, Any] = {}
    try:
        result = FolderIngest(
            dep,
            collection_id,
            workers=workers,
            progress=progress,
            sealed=kind == JobKind.UPLOAD,  # staged uploads are sealed (ADR 0010)
        ).run(folder)
        summary = result.as_dict()
        status = JobStatus.DONE
        if kind == JobKind.UPLOAD and isinstance(folder, Path):
            _rewrite_provenance(dep, result.job_id, folder, task_id)
            summary["rejected_files"] = [
                {"path": _upload_source(p, folder, task_id), "reason": reason}
                for p, reason in result.rejected_files
            ]
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
            task.status = status
            task.error = error
            task.summary = summary or {"rejected_files": list(progress.rejections)}
            task.files_total = progress.total
            task.files_done = progress.done
            task.faces = progress.faces
            task.ingest_job_id = int(summary["job_id"]) if "job_id" in summary else None
            task.finished_at = utcnow()


def _renamer(kind: str, folder: Path | Tree, task_id: int) -> Callable[[str], str] | None:
    """How an uploaded file's staged path is named to the user (None: as it is)."""
    if kind == JobKind.UPLOAD and isinstance(folder, Path):
        root = folder
        return lambda path: _upload_source(path, root, task_id)
    return None


def _label(folder: Path | Tree) -> str:
    return folder.label if isinstance(folder, Tree) else "the upload"


def _upload_source(path: str, folder: Path, task_id: int) -> str:
    try:
        rel = Path(path).relative_to(folder.resolve())
    except ValueError:
        return path
    name = rel.name.split("-", 1)[-1].removesuffix(".upload.jpg")
    return f"upload:{task_id}/{name}"


def _rewrite_provenance(dep: Deployment, job_id: int, folder: Path, task_id: int) -> None:
    with dep.db.session() as s:
        for row in s.scalars(select(SourceFile).where(SourceFile.job_id == job_id)):
            row.source = _upload_source(row.source, folder, task_id)
            row.source_kind = "upload"


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
        audit.record_for(
            session,
            actor,
            "ingest.started",
            target_type="job",
            target_id=task.id,
            details={
                "kind": "upload",
                "collection_id": collection.id,
                "files": len(files),
                "bytes": sum(len(f.data) for f in files),
            },
        )
        session.commit()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    runner.submit(task.id, folder, temporary=True, org_id=org_id)
    return job_view(task)


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
    *,
    lifetime_s: float = EVENTS_LIFETIME_S,
    poll_s: float = EVENTS_POLL_S,
) -> Iterator[str]:
    """A job's progress as server-sent events (text/event-stream): a `progress` event whenever
    the job's row changes (status, files done of total, faces, files/s, faces/s, the rejected
    files with their reasons), then `end` with the final job once it is done or failed. The
    organisation's own jobs only (NotFound now, before the stream starts, for anyone else's).
    A stream lasts at most `lifetime_s`; it then ends with `retry` advice, and the browser's
    EventSource reconnects."""
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
                yield _event("end" if final else "progress", _progress(view), seq)
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
                    yield _event("end", {**_progress(view), "status": JobStatus.FAILED}, seq)
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
            job.files_total, job.files_done, job.faces = (
                progress.total,
                progress.done,
                progress.faces,
            )
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
    runner.submit_work(
        job_id, lambda: run_reembed_job(dep, job_id, target_name(target)), org_id=org_id
    )
    return job_view(task)


def target_name(model_id: str) -> str:
    from facesearch.vision.registry import RUNTIME_FOR_ID

    return RUNTIME_FOR_ID[model_id]
