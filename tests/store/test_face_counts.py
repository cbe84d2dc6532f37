"""The per-collection face counts the index reconciles against stay exact whatever writes the
faces: inserts, deletions, a model change (re-embed), a collection's cascade, and an upgrade of
a database that already holds faces."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from facesearch.store.db import MIGRATIONS_DIR, Database, migrate
from facesearch.store.faces import counts_by_collection
from facesearch.store.gallery import Collection, Face, FaceCount, FileStatus, SourceFile


def _rows(cid: int, model_id: str, ids: range) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    files = [
        {
            "id": i,
            "collection_id": cid,
            "source": f"/photos/{i}.jpg",
            "source_kind": "file",
            "content_hash": f"{i:064x}",
            "byte_size": 1000,
            "status": FileStatus.OK,
            "face_count": 1,
        }
        for i in ids
    ]
    faces = [
        {
            "id": i,
            "file_id": i,
            "collection_id": cid,
            "face_index": 0,
            "model_id": model_id,
            "runtime": "test",
            "detector": "test",
            "left": 0,
            "top": 0,
            "right": 10,
            "bottom": 10,
            "landmarks": [],
            "confidence": 0.9,
            "quality": 0.9,
            "quality_detail": {},
            "low_quality": False,
            "embedding": b"sealed",
        }
        for i in ids
    ]
    return files, faces


def _add(session: Session, cid: int, model_id: str, ids: range) -> None:
    files, faces = _rows(cid, model_id, ids)
    session.execute(insert(SourceFile), files)
    session.execute(insert(Face), faces)


def _truth(session: Session) -> dict[tuple[int, str], int]:
    rows = session.execute(
        select(Face.collection_id, Face.model_id, func.count()).group_by(
            Face.collection_id, Face.model_id
        )
    ).all()
    return {(int(c), str(m)): int(n) for c, m, n in rows}


def _kept(session: Session) -> dict[tuple[int, str], int]:
    rows = session.execute(
        select(FaceCount.collection_id, FaceCount.model_id, FaceCount.faces).where(
            FaceCount.faces != 0
        )
    ).all()
    return {(int(c), str(m)): int(n) for c, m, n in rows}


def test_face_counts_follow_every_write(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        migrate(db.engine)
        with Session(db.engine) as s:
            s.add_all([Collection(id=1, name="a"), Collection(id=2, name="b")])
            s.flush()
            _add(s, 1, "sface", range(1, 6))
            _add(s, 2, "sface", range(6, 9))
            _add(s, 2, "dlib", range(9, 11))
            s.commit()
            assert _kept(s) == _truth(s) == {(1, "sface"): 5, (2, "sface"): 3, (2, "dlib"): 2}
            assert counts_by_collection(s, "sface") == {1: (5, 5), 2: (3, 8)}

            s.execute(delete(Face).where(Face.id.in_([2, 5])))  # a deletion, the highest id too
            s.execute(update(Face).where(Face.id == 9).values(model_id="sface"))  # re-embed
            s.commit()
            assert _kept(s) == _truth(s) == {(1, "sface"): 3, (2, "sface"): 4, (2, "dlib"): 1}
            assert counts_by_collection(s, "sface") == {1: (3, 4), 2: (4, 9)}

            s.rollback()
            _add(s, 1, "sface", range(20, 23))  # rolled back: the counts with it
            s.rollback()
            assert _kept(s) == _truth(s)

            s.execute(delete(Collection).where(Collection.id == 2))  # the faces' cascade
            s.commit()
            assert _kept(s) == _truth(s) == {(1, "sface"): 3}
            assert s.scalar(select(func.count()).select_from(FaceCount)) == 1
            assert counts_by_collection(s, "dlib") == {}
    finally:
        db.dispose()


def test_upgrading_a_database_with_faces_counts_them(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0014")
        with Session(db.engine) as s:
            s.add(Collection(id=1, name="old"))
            s.flush()
            _add(s, 1, "sface", range(1, 8))
            s.commit()
        migrate(db.engine)
        with Session(db.engine) as s:
            assert _kept(s) == {(1, "sface"): 7}
            _add(s, 1, "sface", range(8, 10))  # and keeps counting
            s.commit()
            assert counts_by_collection(s, "sface") == {1: (9, 9)}
    finally:
        db.dispose()
