"""Queries over faces that more than one service needs: per-collection counts and the sealed
embeddings, opened in bulk (for the vector index, which is rebuilt from these); blob references
and the file look-ups of a resumed ingest. Each is served by an index
(tests/store/test_query_plans.py fails when one scans a whole table)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from facesearch.crypto import Sealer
from facesearch.store.gallery import Collection, Face, FaceCount, SourceFile, embedding_aad


def counts_by_collection(session: Session, model_id: str) -> dict[int, tuple[int, int]]:
    """{collection id: (faces, highest face id)} for one model's faces: the trigger-kept count
    (`face_counts`, one row per collection) and one probe of the (model, collection, id) index
    for the highest id. Nothing here grows with the gallery."""
    out: dict[int, tuple[int, int]] = {}
    rows = session.execute(
        select(FaceCount.collection_id, FaceCount.faces)
        .where(FaceCount.model_id == model_id, FaceCount.faces > 0)
        .order_by(FaceCount.collection_id)
    )
    for cid, n in rows.all():
        where = (Face.model_id == model_id, Face.collection_id == cid)
        out[int(cid)] = (int(n), int(session.scalar(select(func.max(Face.id)).where(*where)) or 0))
    return out


def model_ids(session: Session) -> list[str]:
    """The models whose descriptors the collections hold."""
    rows = session.scalars(
        select(Collection.model_id).where(Collection.model_id.is_not(None)).distinct()
    )
    return sorted(str(m) for m in rows)


def count_after(session: Session, collection_id: int, model_id: str, after_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(Face.id)).where(
                Face.model_id == model_id,
                Face.collection_id == collection_id,
                Face.id > after_id,
            )
        )
        or 0
    )


def open_embedding(sealer: Sealer, face: Face) -> npt.NDArray[np.float32]:
    return np.frombuffer(sealer.open(face.embedding, face.embedding_aad), dtype=np.float32)


def embedding_chunks(
    session: Session,
    sealer: Sealer,
    collection_id: int,
    model_id: str,
    after_id: int = 0,
    *,
    dim: int = 128,
    chunk: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
    """Ids and opened embeddings of a collection's faces past `after_id`, in id order, in chunks
    of `chunk` faces (so a rebuild of millions never holds them all twice)."""
    query = (
        select(Face.id, Face.file_id, Face.face_index, Face.embedding)
        .where(Face.model_id == model_id, Face.collection_id == collection_id, Face.id > after_id)
        .order_by(Face.id)
    )
    ids = np.empty(chunk, np.int64)
    raw = bytearray()
    n = 0
    open_ = sealer.open
    # stream_results for this statement only: `Connection.execution_options` would change the
    # session's connection for good (on PostgreSQL every later statement, DELETE included, would
    # then run through a server-side cursor and fail)
    rows = session.connection().execute(query, execution_options={"stream_results": True})
    for face_id, file_id, face_index, sealed in rows:  # Core rows: no ORM per row
        ids[n] = face_id
        raw += open_(sealed, embedding_aad(file_id, face_index, model_id))
        n += 1
        if n == chunk:
            yield ids.copy(), np.frombuffer(raw, np.float32).reshape(n, dim).copy()
            if on_progress:
                on_progress(n)
            raw = bytearray()
            n = 0
    if n:
        yield ids[:n].copy(), np.frombuffer(raw, np.float32).reshape(n, dim).copy()
        if on_progress:
            on_progress(n)


def embeddings(
    session: Session,
    sealer: Sealer,
    collection_id: int,
    model_id: str,
    after_id: int = 0,
    *,
    dim: int = 128,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Ids and opened embeddings of a collection's faces past `after_id`, in id order."""
    ids: list[int] = []
    vectors: list[npt.NDArray[np.float32]] = []
    query = (
        select(Face.id, Face.file_id, Face.face_index, Face.embedding)
        .where(Face.collection_id == collection_id, Face.model_id == model_id, Face.id > after_id)
        .order_by(Face.id)
        .execution_options(yield_per=5000)
    )
    for face_id, file_id, face_index, sealed in session.execute(query):
        raw = sealer.open(sealed, embedding_aad(file_id, face_index, model_id))
        ids.append(face_id)
        vectors.append(np.frombuffer(raw, dtype=np.float32))
        if on_progress and len(ids) % 1000 == 0:
            on_progress(1000)
    return (
        np.asarray(ids, dtype=np.int64),
        np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32),
    )


def blob_in_use(session: Session, blob: str) -> bool:
    """Whether any face crop or stored image still references `blob` (two index look-ups)."""
    if session.scalar(select(Face.id).where(Face.crop_blob == blob).limit(1)) is not None:
        return True
    return (
        session.scalar(select(SourceFile.id).where(SourceFile.image_blob == blob).limit(1))
        is not None
    )


def known_sources(
    session: Session, collection_id: int, sources: Sequence[str]
) -> set[tuple[str, int, float | None]]:
    """(path, size, mtime) of those of `sources` the collection already has (resume)."""
    rows = session.execute(
        select(SourceFile.source, SourceFile.byte_size, SourceFile.mtime).where(
            SourceFile.collection_id == collection_id, SourceFile.source.in_(list(sources))
        )
    ).all()
    return {(r[0], r[1], r[2]) for r in rows}


def known_hashes(session: Session, collection_id: int, hashes: Sequence[str]) -> set[str]:
    """Those of the keyed content `hashes` the collection already holds (duplicates)."""
    return set(
        session.scalars(
            select(SourceFile.content_hash).where(
                SourceFile.collection_id == collection_id,
                SourceFile.content_hash.in_(list(hashes)),
            )
        )
    )


#: the PostgreSQL advisory lock key under which face rows are inserted (see `serialise_face_ids`)
FACE_INSERT_LOCK = 0x46534643  # "FSFC"


def serialise_face_ids(session: Session) -> None:
    """Take, for the rest of the session's transaction, the one lock every transaction that
    inserts faces holds (PostgreSQL; SQLite has one writer anyway). Face ids are then allocated
    and committed in order: whoever sees face id N committed also sees every committed face
    below N, so a process catches up by reading past its high-water mark (`max_face_id`,
    `new_faces_after`) and never misses a face another process committed late."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FACE_INSERT_LOCK})


def max_face_id(session: Session) -> int:
    """The highest face id committed (one probe of the primary key)."""
    return int(session.scalar(select(func.max(Face.id))) or 0)


def new_faces_after(session: Session, model_id: str, after_id: int) -> dict[int, int]:
    """{collection id: faces} of one model's faces past `after_id`: a range of the primary key,
    counted here. Asked for the model in SQL, SQLite walked the model's (model, collection, id)
    index instead, reading every face of the model: 0.29 s of each search at 1M faces while an
    ingest job committed faces."""
    out: dict[int, int] = {}
    rows = session.execute(select(Face.collection_id, Face.model_id).where(Face.id > after_id))
    for cid, mid in rows:
        if mid == model_id:
            out[int(cid)] = out.get(int(cid), 0) + 1
    return out


def hashes_with_sources(
    session: Session, collection_id: int, hashes: Sequence[str]
) -> dict[str, str]:
    """{content hash: source} of those of `hashes` the collection already holds."""
    rows = session.execute(
        select(SourceFile.content_hash, SourceFile.source).where(
            SourceFile.collection_id == collection_id,
            SourceFile.content_hash.in_(list(hashes)),
        )
    ).all()
    return {str(h): str(src) for h, src in rows}
