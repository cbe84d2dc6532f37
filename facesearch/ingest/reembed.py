"""Move a collection to another face model, from its own sealed images.

Every stored image of the collection is opened, analysed with the target model (its detector,
alignment and descriptor) and its faces are committed beside the old ones, chunk by chunk, with
the target model's id: the collection is still searched with its old model meanwhile, since a
search uses the collection's `model_id` and each model has its own index. A run that is killed
resumes where it stopped (files that already have faces of the target model are skipped; files
where it found none are simply analysed again). When every file is done, one transaction
switches the collection to the target model, counts each file's faces anew and deletes the old
faces; their crops are deleted after it unless another face still uses them.

A collection that kept no images (`store_images` off) cannot be re-embedded: the error says so
and how to ingest it again from its sources.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update

from facesearch.deployment import Deployment
from facesearch.errors import Conflict, InvalidRequest, NotFound
from facesearch.gallery.collections import model_id_for
from facesearch.ingest.runner import IngestProgress, NoProgress, new_face, worker_config
from facesearch.ingest.worker import FileResult, run_chunks
from facesearch.security import audit
from facesearch.security.actor import Actor, system_actor
from facesearch.security.tenancy import display_name
from facesearch.store import faces
from facesearch.store.gallery import Collection, Face, FileStatus, SourceFile

CHUNK_FILES = 4


@dataclass
class ReembedSummary:
    collection_id: int
    collection: str
    from_model: str
    to_model: str
    files: int = 0
    skipped: int = 0
    analysed: int = 0
    faces: int = 0
    unreadable: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        secs = max(self.seconds, 1e-9)
        return {
            "collection_id": self.collection_id,
            "collection": self.collection,
            "from_model": self.from_model,
            "to_model": self.to_model,
            "files": self.files,
            "skipped_already_done": self.skipped,
            "analysed": self.analysed,
            "faces": self.faces,
            "unreadable": self.unreadable,
            "seconds": round(self.seconds, 2),
            "faces_per_s": round(self.faces / secs, 2),
        }


class Reembed:
    def __init__(
        self,
        dep: Deployment,
        collection_id: int,
        model: str | None = None,
        *,
        actor: Actor | None = None,
        workers: int | None = None,
        progress: IngestProgress | None = None,
    ) -> None:
        self.dep = dep
        self.collection_id = collection_id
        self.target = model_id_for(dep, model)
        self.actor = actor or system_actor()
        self.workers = workers if workers is not None else dep.settings.worker_count
        self.progress = progress or NoProgress()

    def _plan(self) -> tuple[Collection, list[tuple[int, str]], set[int]]:
        with self.dep.db.session() as s:
            collection = s.get(Collection, self.collection_id)
            if collection is None:
                raise NotFound("no such collection")
            if collection.model_id == self.target:
                raise Conflict(
                    f"collection {display_name(collection)!r} already holds {self.target} "
                    "embeddings"
                )
            files = s.execute(
                select(SourceFile.id, SourceFile.image_blob)
                .where(
                    SourceFile.collection_id == collection.id,
                    SourceFile.status != FileStatus.REJECTED,
                )
                .order_by(SourceFile.id)
            ).all()
            missing = sum(1 for _, blob in files if blob is None)
            if missing:
                raise InvalidRequest(
                    f"collection {display_name(collection)!r} kept no copy of {missing} of its "
                    f"{len(files)} images (store_images was off when they were ingested), so it "
                    "cannot be re-embedded from the data directory: ingest the sources again into "
                    "a new collection with the other model (`facesearch ingest PATH -c NEW "
                    "--model MODEL`)"
                )
            done = set(
                s.scalars(
                    select(Face.file_id)
                    .where(Face.collection_id == collection.id, Face.model_id == self.target)
                    .distinct()
                )
            )
            s.expunge(collection)
        return collection, [(int(i), str(b)) for i, b in files], {int(i) for i in done}

    def run(self) -> ReembedSummary:
        collection, files, done = self._plan()
        source_model = collection.model_id or ""
        summary = ReembedSummary(
            collection.id, display_name(collection), source_model, self.target, files=len(files)
        )
        model = self.dep.model_for(self.target)
        index = self.dep.index_for(self.target)
        started = time.perf_counter()
        self.progress.start(len(files))

        def chunks() -> Iterator[tuple[list[int], list[tuple[int, bytes]]]]:
            items: list[tuple[int, bytes]] = []
            for file_id, blob in files:
                if file_id in done:
                    summary.skipped += 1
                    self.progress.advance(1, 0)
                    continue
                try:
                    data = self.dep.blobs.get(blob)
                except (OSError, ValueError):
                    summary.unreadable += 1
                    self.progress.advance(1, 0)
                    continue
                items.append((file_id, data))
                if len(items) >= CHUNK_FILES:
                    yield [k for k, _ in items], items
                    items = []
            if items:
                yield [k for k, _ in items], items

        def commit(_keys: list[int], results: list[FileResult]) -> None:
            new_ids: list[int] = []
            vectors: list[bytes] = []
            with self.dep.db.session() as s:
                # face ids in commit order; files another run re-embedded meanwhile are left out
                faces.serialise_face_ids(s)
                already = set(
                    s.scalars(
                        select(Face.file_id)
                        .where(
                            Face.file_id.in_([r.key for r in results]),
                            Face.model_id == self.target,
                        )
                        .distinct()
                    )
                )
                for result in results:
                    if result.key in already:
                        continue
                    for position, face in enumerate(result.faces):
                        row = new_face(
                            self.dep,
                            model,
                            file_id=result.key,
                            collection_id=collection.id,
                            position=position,
                            face=face,
                        )
                        s.add(row)
                        s.flush()
                        new_ids.append(row.id)
                        vectors.append(face.embedding)
            added = len(new_ids)
            summary.analysed += len(results)
            summary.faces += added
            if new_ids:
                matrix = np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(added, -1)
                index.add(collection.id, np.asarray(new_ids, dtype=np.int64), matrix)
            self.progress.advance(len(results), added)

        try:
            run_chunks(
                chunks(),
                commit,
                config=worker_config(self.dep, self.target, self.workers),
                workers=self.workers,
                model=model,
            )
        finally:
            index.save()
        summary.faces = self._switch(collection, source_model)
        summary.seconds = time.perf_counter() - started
        return summary

    def _switch(self, collection: Collection, source_model: str) -> int:
        """One transaction: the collection moves to the target model, files are recounted, the
        old model's faces go. Returns the collection's face count under the target model."""
        with self.dep.db.session() as s:
            old_crops = set(
                s.scalars(
                    select(Face.crop_blob).where(
                        Face.collection_id == collection.id,
                        Face.model_id != self.target,
                        Face.crop_blob.is_not(None),
                    )
                )
            )
            s.execute(
                delete(Face).where(
                    Face.collection_id == collection.id, Face.model_id != self.target
                )
            )
            counts = dict(
                s.execute(
                    select(Face.file_id, func.count(Face.id))
                    .where(Face.collection_id == collection.id)
                    .group_by(Face.file_id)
                ).all()
            )
            files = s.scalars(
                select(SourceFile).where(
                    SourceFile.collection_id == collection.id,
                    SourceFile.status != FileStatus.REJECTED,
                )
            )
            for row in files:
                row.face_count = int(counts.get(row.id, 0))
                row.status = FileStatus.OK if row.face_count else FileStatus.NO_FACE
            s.execute(
                update(Collection)
                .where(Collection.id == collection.id)
                .values(model_id=self.target)
            )
            total = int(sum(counts.values()))
            audit.record_for(
                s,
                self.actor,
                "collection.reembedded",
                org_id=collection.org_id,
                target_type="collection",
                target_id=collection.id,
                details={"from_model": source_model, "to_model": self.target, "faces": total},
            )
        old_index = self.dep.loaded_index(source_model) if source_model else None
        if old_index is not None:
            old_index.drop_collection(collection.id)
            old_index.save()
        with self.dep.db.session() as s:
            for blob in old_crops:
                if (
                    blob
                    and s.scalar(select(Face.id).where(Face.crop_blob == blob).limit(1)) is None
                ):
                    self.dep.blobs.delete(blob)
        return total
