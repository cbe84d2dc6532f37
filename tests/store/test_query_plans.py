"""Every lookup on a hot path is served by an index: SQLite's EXPLAIN QUERY PLAN of the queries
the index sync, ingest resume, search and collection deletion run must never scan a whole
faces or files table, and every foreign key into them has an index (SQLite checks those on each
delete)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, inspect, select, text

from facesearch.crypto import Sealer
from facesearch.store import faces
from facesearch.store.db import Database, migrate
from facesearch.store.gallery import Face, SourceFile

HOT_TABLES = ("faces", "files")  # collections are few: scanning them is fine


def _record(db: Database) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "DELETE", "UPDATE")):
            seen.append((statement, params))

    return seen


def _full_scans(db: Database, statement: str, params: Any) -> list[str]:
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
    # "SCAN t" reads every row; "SCAN t USING [COVERING] INDEX i" reads every index entry
    return [row[3] for row in plan if re.match(rf"SCAN ({'|'.join(HOT_TABLES)})\b", row[3])]


def test_hot_queries_use_indexes(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        migrate(db.engine)
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        seen = _record(db)
        sealer = Sealer(b"k" * 32)
        with db.session() as s:
            faces.counts_by_collection(s, "sface-2021dec")
            faces.count_after(s, 1, "sface-2021dec", 10)
            list(faces.embedding_chunks(s, sealer, 1, "sface-2021dec", 10))
            faces.blob_in_use(s, "ab" * 32)
            faces.known_sources(s, 1, ["/a.jpg", "/b.jpg"])
            faces.known_hashes(s, 1, ["00" * 32])
            faces.model_ids(s)
            # the service's catch-up with faces workers commit, and a chunk's re-check
            faces.max_face_id(s)
            faces.new_faces_after(s, "sface-2021dec", 10)
            faces.hashes_with_sources(s, 1, ["00" * 32])
            # search: the faces of the hits; collection deletion: its rows, then its blobs
            s.execute(
                select(Face, SourceFile)
                .join(SourceFile, Face.file_id == SourceFile.id)
                .where(Face.id.in_([1, 2, 3]))
            ).all()
            s.execute(select(Face.crop_blob).where(Face.collection_id == 1)).all()
            s.execute(select(SourceFile.image_blob).where(SourceFile.collection_id == 1)).all()
            s.execute(delete(Face).where(Face.collection_id == 1))
            s.execute(delete(SourceFile).where(SourceFile.collection_id == 1))
            s.rollback()
        assert len(seen) >= 12
        scans = {stmt: _full_scans(db, stmt, params) for stmt, params in seen}
        bad = {stmt: plan for stmt, plan in scans.items() if plan}
        assert not bad, f"hot queries scan whole tables: {bad}"
    finally:
        db.dispose()


def test_a_full_scan_is_caught(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        migrate(db.engine)
        assert _full_scans(db, "SELECT id FROM faces WHERE quality > ?", (0.5,))
    finally:
        db.dispose()


def test_every_foreign_key_into_faces_and_files_is_indexed(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        migrate(db.engine)
        insp = inspect(db.engine)
        missing = []
        for table in insp.get_table_names():
            leading = {tuple(ix["column_names"][:1]) for ix in insp.get_indexes(table)}
            leading |= {tuple(u["column_names"][:1]) for u in insp.get_unique_constraints(table)}
            pk = insp.get_pk_constraint(table)["constrained_columns"]
            for fk in insp.get_foreign_keys(table):
                if fk["referred_table"] not in ("faces", "files", "ingest_jobs"):
                    continue
                col = tuple(fk["constrained_columns"][:1])
                if col not in leading and list(col) != pk[:1]:
                    missing.append(f"{table}.{col[0]} -> {fk['referred_table']}")
        assert not missing, f"unindexed foreign keys (a delete scans the table): {missing}"
    finally:
        db.dispose()
