"""The distributed engines give the embedded default's answers: the same shared photos ingested
into SQLite + the segment index and into PostgreSQL + Milvus Lite are searched through the real
engine, and every probe gets the same candidates with the same scores (to 1e-6). Deleting a
collection purges it from Milvus, and a deployment reopened after a crash reconciles Milvus
with the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from facesearch.deployment import Deployment
from facesearch.gallery.collections import delete_operator_collection, ids_by_name
from facesearch.index.milvus_index import MilvusIndex
from facesearch.search.engine import SearchEngine
from facesearch.store.gallery import Face
from tests import pg
from tests.conftest import faces_dir, ingest, new_deployment


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Deployment]]:
    small, multi = faces_dir("small"), faces_dir("small_multi")
    url = pg.create_database()
    embedded = new_deployment(tmp_path_factory.mktemp("embedded"))
    scaled = new_deployment(
        tmp_path_factory.mktemp("scaled"), database_url=url, index_backend="milvus"
    )
    try:
        for dep in (embedded, scaled):
            ingest(dep, "small", small)
            ingest(dep, "multi", multi)
        yield embedded, scaled
    finally:
        embedded.close()
        scaled.close()
        pg.drop_database(url)


def _ids(dep: Deployment, *names: str) -> list[int]:
    with dep.db.session() as s:
        return ids_by_name(s, list(names))


def _answer(dep: Deployment, photo: Path, *names: str) -> list[list[tuple[Any, ...]]]:
    result = SearchEngine(dep).search(
        photo.read_bytes(), collection_ids=_ids(dep, *names), top_k=10
    )
    return [
        [(c.source, tuple(c.box), c.collection, c.score, c.above_threshold) for c in f.candidates]
        for f in result.faces
    ]


def _same(a: list[list[tuple[Any, ...]]], b: list[list[tuple[Any, ...]]]) -> bool:
    if [[c[:3] for c in face] for face in a] != [[c[:3] for c in face] for face in b]:
        return False
    return all(
        abs(x[3] - y[3]) < 1e-6 and x[4] == y[4]
        for fa, fb in zip(a, b, strict=True)
        for x, y in zip(fa, fb, strict=True)
    )


def _probes() -> list[Path]:
    small = faces_dir("small")
    photos = sorted(p for p in small.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    return photos[::3] + sorted(faces_dir("small_multi").glob("*.jpg"))[:2]


def test_the_same_gallery_gives_the_same_results_on_both_backends(
    pair: tuple[Deployment, Deployment],
) -> None:
    embedded, scaled = pair
    index = scaled.index_for(scaled.default_model_id)
    assert isinstance(index, MilvusIndex)
    assert index.hnsw_ef == scaled.settings.milvus_hnsw_ef  # the setting reaches the search
    assert scaled.settings.sqlalchemy_url.startswith("postgresql")
    compared = 0
    for photo in _probes():
        want = _answer(embedded, photo, "small", "multi")
        got = _answer(scaled, photo, "small", "multi")
        assert want and any(want), f"{photo}: no candidates"
        assert _same(want, got), f"{photo}:\n{want}\n{got}"
        compared += sum(len(face) for face in want)
    assert compared >= 100


def test_a_reopened_deployment_reconciles_milvus_after_a_crash(
    pair: tuple[Deployment, Deployment],
) -> None:
    _, scaled = pair
    model_id = scaled.default_model_id
    (small,) = _ids(scaled, "small")
    with scaled.db.session() as s:
        face_ids = s.scalars(select(Face.id).where(Face.collection_id == small)).all()
    count = len(face_ids)
    probe = _vector(scaled, face_ids[0])

    def reopen_and_find() -> tuple[int, set[int]]:
        reopened = Deployment.open(scaled.settings)  # as the next process would
        try:
            fresh = reopened.index_for(model_id)
            hits = fresh.search(probe, count + 5, [small])[0]
            return fresh.state(small).count, {h.face_id for h in hits}
        finally:
            reopened.close()

    # A crash after the database committed a face, before Milvus had it: it comes back.
    scaled.index_for(model_id).remove(small, [face_ids[0]])
    assert scaled.index_for(model_id).state(small).count == count - 1
    assert reopen_and_find() == (count, set(face_ids))
    # A crash after the database deleted a face, before Milvus did: it is purged.
    with scaled.db.session() as s:
        s.execute(delete(Face).where(Face.id == face_ids[1]))
        s.commit()
    assert reopen_and_find() == (count - 1, set(face_ids) - {face_ids[1]})


def _vector(dep: Deployment, face_id: int) -> Any:
    from facesearch.store import faces as face_queries

    with dep.db.session() as s:
        (cid,) = s.scalars(select(Face.collection_id).where(Face.id == face_id)).all()
        chunks = face_queries.embedding_chunks(
            s, dep.keys.embeddings, cid, dep.default_model_id, face_id - 1, dim=128
        )
        ids, vectors = next(iter(chunks))
    assert int(ids[0]) == face_id
    return vectors[:1]


def test_deleting_a_collection_purges_its_faces_from_milvus(
    pair: tuple[Deployment, Deployment],
) -> None:
    _, scaled = pair
    index = scaled.index_for(scaled.default_model_id)
    assert isinstance(index, MilvusIndex)
    (multi,) = _ids(scaled, "multi")
    assert index.state(multi).count > 0
    with scaled.db.session() as s:
        delete_operator_collection(scaled, s, "multi")
    assert multi not in index.collections()
    assert index._count(0, multi) == 0 and index._count(1, multi) == 0
    reopened = MilvusIndex(scaled.milvus, scaled.default_model_id, index.dim)
    assert multi not in reopened.collections() and reopened.state(multi).count == 0
