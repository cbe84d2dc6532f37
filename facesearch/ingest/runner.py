"""Resumable folder ingest: parallel analysis in worker processes, storage in this process.

Each chunk of files is committed in one transaction (files and their faces together), after its
blobs are written. A crash or Ctrl-C therefore loses at most the chunks in flight, and a rerun
skips every committed file (by path, size and time, then by keyed content hash), so counts end
exactly where an uninterrupted run would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from facesearch.deployment import Deployment
from facesearch.errors import InvalidRequest, ModelMismatch, NotFound
from facesearch.ingest.walker import FoundFile, Tree, protected_files
from facesearch.ingest.worker import FaceResult, FileResult, WorkerConfig, run_chunks
from facesearch.store import faces
from facesearch.store.base import utcnow
from facesearch.store.gallery import (
    Collection,
    Face,
    FileStatus,
    IngestRun,
    RunStatus,
    SourceFile,
    embedding_aad,
)
from facesearch.vision.decode import DecodeLimits
from facesearch.vision.model import FaceModel

CHUNK_FILES = 4


class IngestProgress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, files: int, faces: int) -> None: ...


@runtime_checkable
class RejectionProgress(Protocol):
    """A progress that also hears of each rejected file as it is rejected (the API's jobs, so
    that a user follows rejections live)."""

    def rejected(self, source: str, reason: str) -> None: ...


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, files: int, faces: int) -> None:
        pass


@dataclass
class IngestSummary:
    collection: str
    job_id: int  # the IngestRun
    files_seen: int = 0
    ok: int = 0
    no_face: int = 0
    rejected: int = 0
    skipped: int = 0
    duplicates: int = 0
    faces: int = 0
    low_quality_faces: int = 0
    seconds: float = 0.0
    rejected_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.ok + self.no_face + self.rejected

    def as_dict(self) -> dict[str, object]:
        secs = max(self.seconds, 1e-9)
        return {
            "collection": self.collection,
            "job_id": self.job_id,
            "files_seen": self.files_seen,
            "ok": self.ok,
            "no_face": self.no_face,
            "rejected": self.rejected,
            "skipped_already_ingested": self.skipped,
            "duplicates": self.duplicates,
            "faces": self.faces,
            "low_quality_faces": self.low_quality_faces,
            "seconds": round(self.seconds, 2),
            "files_per_s": round(self.processed / secs, 2),
            "faces_per_s": round(self.faces / secs, 2),
            "rejected_files": [{"path": p, "reason": r} for p, r in self.rejected_files],
        }


def worker_config(dep: Deployment, model_id: str, workers: int) -> WorkerConfig:
    """What a worker process needs to analyse images for `model_id` (ingest and re-embed)."""
    settings = dep.settings
    runtime, detector = dep.runtime_of(model_id)
    return WorkerConfig(
        model=runtime,
        detector=detector,
        limits=DecodeLimits.of(settings),
        min_face_size=settings.min_face_size,
        batch_size=settings.embed_batch_size,
        model_options=settings.model_options(max(1, workers)),
        nice=settings.ingest_nice,
        isolated=dep.isolate_ingest,
    )


def new_face(
    dep: Deployment,
    model: FaceModel,
    *,
    file_id: int,
    collection_id: int,
    position: int,
    face: FaceResult,
    crop_blob: str | None = None,
) -> Face:
    """The row of one analysed face: geometry, quality, the sealed embedding (bound to its file,
    position and model) and the sealed crop. Ingest and re-embed both store faces this way."""
    return Face(
        file_id=file_id,
        collection_id=collection_id,
        face_index=position,
        model_id=model.model_id,
        runtime=model.runtime,
        detector=model.detector_name,
        left=face.box[0],
        top=face.box[1],
        right=face.box[2],
        bottom=face.box[3],
        landmarks=face.landmarks,
        confidence=face.confidence,
        quality=float(face.quality["score"]),
        quality_detail=face.quality,
        low_quality=face.low_quality,
        embedding=dep.keys.embeddings.seal(
            face.embedding, embedding_aad(file_id, position, model.model_id)
        ),
        crop_blob=crop_blob or dep.blobs.put(face.crop_jpeg),
    )


class FolderIngest:
    """Ingest a folder (or one file) into an existing collection, named by id. A collection that
    is deleted while the run goes on is never re-created: its next chunk fails to commit."""

    def __init__(
        self,
        dep: Deployment,
        collection_id: int,
        *,
        workers: int | None = None,
        progress: IngestProgress | None = None,
        sealed: bool = False,
        provenance: Callable[[FoundFile], str] | None = None,
        source_kind: str = "file",
    ) -> None:
        self.dep = dep
        self.collection_id = collection_id
        self.sealed = sealed  # the folder's files are sealed uploads
        #: how a found file is named in provenance (default: its path as the tree names it)
        self.provenance = provenance or (lambda found: found.source)
        self.source_kind = source_kind
        #: the IngestRun of the current run, once it has started
        self.run_id: int | None = None
        self.workers = workers if workers is not None else dep.settings.worker_count
        self.progress = progress or NoProgress()

    def _worker_config(self, model_id: str) -> WorkerConfig:
        return worker_config(self.dep, model_id, self.workers)

    def _model_of(self, collection: Collection) -> FaceModel:
        """The collection's own model (the deployment's default for a collection without one)."""
        model_id = collection.model_id or self.dep.default_model_id
        try:
            return self.dep.model_for(model_id)
        except ValueError as exc:
            raise ModelMismatch(
                f"collection {collection.name!r} holds {model_id} embeddings, which no model of "
                "this installation computes; one collection never mixes two models"
            ) from exc

    def _tree(self, root: Path) -> Tree:
        root = root.expanduser()
        if not root.exists():
            raise InvalidRequest(f"{root} does not exist")
        settings = self.dep.settings
        tree = Tree.at(
            root,
            protected=protected_files(settings.db_path, settings.settings_file, self.dep.key_file),
        )
        return replace(tree, sealer=self.dep.keys.blobs) if self.sealed else tree

    # -- planning -----------------------------------------------------------------------------
    #: files looked up in the database at once when deciding what is new (indexed look-ups,
    #: so a run costs in proportion to its folder, not to the collection)
    LOOKUP_BATCH = 500

    def _known_stat(
        self, collection_id: int, batch: list[FoundFile]
    ) -> set[tuple[str, int, float | None]]:
        with self.dep.db.session() as s:
            return faces.known_sources(s, collection_id, [self.provenance(f) for f in batch])

    def _known_hashes(self, collection_id: int, digests: list[str]) -> set[str]:
        with self.dep.db.session() as s:
            return faces.known_hashes(s, collection_id, digests)

    def run(self, root: Path | Tree) -> IngestSummary:
        tree = root if isinstance(root, Tree) else self._tree(root)
        collection_id = self.collection_id
        with self.dep.db.session() as s:
            collection = s.get(Collection, collection_id)
            if collection is None:
                raise NotFound("no such collection")
            model = self._model_of(collection)
            if collection.model_id is None:
                collection.model_id = model.model_id
            name = collection.name
        self.model = model
        self.config = self._worker_config(model.model_id)
        started = time.perf_counter()  # the summary's seconds include the index's open and save
        # load and reconcile the model's index with the database before adding to it
        self.index = self.dep.index_for(model.model_id)
        with self.dep.db.session() as s:
            run = IngestRun(
                collection_id=collection_id,
                source=tree.label,
                status=RunStatus.RUNNING,
                counts={},
            )
            s.add(run)
            s.flush()
            job_id = run.id
        self.run_id = job_id
        summary = IngestSummary(name, job_id)
        files = list(tree.walk())
        summary.files_seen = len(files)
        self.progress.start(len(files))
        status = RunStatus.INTERRUPTED
        try:
            run_chunks(
                self._chunks(collection_id, files, summary),
                lambda meta, results: self._commit(collection_id, job_id, meta, results, summary),
                config=self.config,
                workers=self.workers,
                model=model,
            )
            status = RunStatus.DONE
        finally:
            self.index.save()
            summary.seconds = time.perf_counter() - started
            with self.dep.db.session() as s:
                job_row = s.get(IngestRun, job_id)
                if job_row is not None:
                    job_row.status = status
                    job_row.finished_at = utcnow()
                    job_row.counts = {
                        k: v for k, v in summary.as_dict().items() if isinstance(v, int | float)
                    }
        return summary

    def _chunks(
        self, collection_id: int, files: list[FoundFile], summary: IngestSummary
    ) -> Iterator[tuple[dict[int, tuple[FoundFile, str, bytes]], list[tuple[int, bytes]]]]:
        """Read and hash files in this process; yield chunks of new content for the workers.
        Whether a file is already in the collection is asked batch by batch (by path, size and
        time, then by keyed content hash), through indexes."""
        meta: dict[int, tuple[FoundFile, str, bytes]] = {}
        items: list[tuple[int, bytes]] = []
        seen_hashes: set[str] = set()
        for start in range(0, len(files), self.LOOKUP_BATCH):
            batch = files[start : start + self.LOOKUP_BATCH]
            known_stat = self._known_stat(collection_id, batch)
            for offset, found in enumerate(batch):
                source = self.provenance(found)
                if (source, found.size, found.mtime) in known_stat:
                    summary.skipped += 1
                    self.progress.advance(1, 0)
                    continue
                try:
                    data = found.read(self.config.limits.max_file_bytes + 1)
                except OSError as exc:
                    summary.rejected += 1
                    self._reject(summary, source, f"unreadable: {exc.strerror}")
                    self.progress.advance(1, 0)
                    continue
                digest = self.dep.keys.content_hash(data)
                if digest in seen_hashes or self._known_hashes(collection_id, [digest]):
                    summary.duplicates += 1
                    self.progress.advance(1, 0)
                    continue
                seen_hashes.add(digest)
                meta[start + offset] = (found, digest, data)
                items.append((start + offset, data))
                if len(items) >= CHUNK_FILES:
                    yield meta, items
                    meta, items = {}, []
        if items:
            yield meta, items

    def _reject(self, summary: IngestSummary, source: str, reason: str) -> None:
        summary.rejected_files.append((source, reason))
        if isinstance(self.progress, RejectionProgress):
            self.progress.rejected(source, reason)

    # -- storage ------------------------------------------------------------------------------
    def _commit(
        self,
        collection_id: int,
        job_id: int,
        meta: dict[int, tuple[FoundFile, str, bytes]],
        results: list[FileResult],
        summary: IngestSummary,
    ) -> None:
        dep = self.dep
        model = self.model
        store_images = dep.settings.store_images
        new_ids: list[int] = []
        new_vecs: list[bytes] = []
        faces_added = 0
        committed_meanwhile = 0
        # blobs first, outside the face-insert lock (content-addressed: writing one another run
        # wrote already is a no-op), so the lock covers the inserts only
        blobs: dict[int, tuple[str | None, list[str]]] = {}
        for result in results:
            data = meta[result.key][2]
            keep = result.status != FileStatus.REJECTED and store_images
            blobs[result.key] = (
                dep.blobs.put(data) if keep else None,
                [dep.blobs.put(face.crop_jpeg) for face in result.faces],
            )
        with dep.db.session() as s:
            # face ids in commit order; and, under that lock, files another run (another worker
            # on the same folder or job) committed since this chunk was planned are left out
            faces.serialise_face_ids(s)
            taken = faces.hashes_with_sources(s, collection_id, [d for _, d, _ in meta.values()])
            pending: list[tuple[SourceFile, FileResult]] = []
            for result in results:
                found, digest, data = meta[result.key]
                source = self.provenance(found)
                if digest in taken:
                    if taken[digest] == source:
                        summary.skipped += 1
                    else:
                        summary.duplicates += 1
                    committed_meanwhile += 1
                    continue
                image_blob = blobs[result.key][0]
                row = SourceFile(
                    collection_id=collection_id,
                    job_id=job_id,
                    source=source,
                    source_kind=self.source_kind,
                    content_hash=digest,
                    byte_size=len(data),
                    mtime=found.mtime,
                    width=result.width,
                    height=result.height,
                    format=result.format,
                    status=result.status,
                    reason=result.reason,
                    face_count=len(result.faces),
                    image_blob=image_blob,
                )
                s.add(row)
                pending.append((row, result))
            s.flush()
            for row, result in pending:
                for index, face in enumerate(result.faces):
                    face_row = new_face(
                        dep,
                        model,
                        file_id=row.id,
                        collection_id=collection_id,
                        position=index,
                        face=face,
                        crop_blob=blobs[result.key][1][index],
                    )
                    s.add(face_row)
                    s.flush()
                    new_ids.append(face_row.id)
                    new_vecs.append(face.embedding)
                    faces_added += 1
                    summary.low_quality_faces += int(face.low_quality)
                if result.status == FileStatus.OK:
                    summary.ok += 1
                elif result.status == FileStatus.NO_FACE:
                    summary.no_face += 1
                else:
                    summary.rejected += 1
                    self._reject(summary, row.source, result.reason or "rejected")
        summary.faces += faces_added
        if new_ids:
            vectors = np.frombuffer(b"".join(new_vecs), dtype=np.float32).reshape(len(new_ids), -1)
            self.index.add(collection_id, np.asarray(new_ids, dtype=np.int64), vectors)
        self.progress.advance(len(pending) + committed_meanwhile, faces_added)
