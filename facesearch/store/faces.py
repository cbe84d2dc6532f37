"""Queries over faces that more than one service needs: per-collection counts and the sealed
embeddings, opened in bulk (for the vector index, which is rebuilt from these)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facesearch.crypto import Sealer
from facesearch.store.gallery import Face, embedding_aad


def counts_by_collection(session: Session, model_id: str) -> dict[int, tuple[int, int]]:
    """{collection id: (faces, highest face id)} for one model's faces."""
    rows = session.execute(
        select(Face.collection_id, func.count(Face.id), func.max(Face.id))
        .where(Face.model_id == model_id)
        .group_by(Face.collection_id)
    ).all()
    return {int(cid): (int(n), int(mx)) for cid, n, mx in rows}


def count_after(session: Session, collection_id: int, model_id: str, after_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(Face.id)).where(
                Face.collection_id == collection_id,
                Face.model_id == model_id,
                Face.id > after_id,
            )
        )
        or 0
    )


def open_embedding(sealer: Sealer, face: Face) -> npt.NDArray[np.float32]:
    return np.frombuffer(sealer.open(face.embedding, face.embedding_aad), dtype=np.float32)


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
