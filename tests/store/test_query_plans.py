"""Every lookup on a hot path is served by an index: the query plan of the queries the index
sync, ingest resume, search and collection deletion run must never scan a whole faces or files
table, and every foreign key into them has an index (the database checks those on each delete).

On SQLite, EXPLAIN QUERY PLAN of an empty, analysed database; on PostgreSQL
(FACESEARCH_TEST_BACKEND=postgresql), whose planner costs by the table's statistics, EXPLAIN of
the same queries on tables with enough rows (ANALYZE first): no Seq Scan on faces or files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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
    # "SCAN t" reads every row; "SCAN t USING [COVERING] INDEX i" reads every index entry; a
    # search constrained by the model alone reads every face of the model (a deployment has one
    # or two): at 1M faces that was 0.29 s of every search while an ingest job ran
    tables = "|".join(HOT_TABLES)
    return [
        row[3]
        for row in plan
        if re.match(rf"SCAN ({tables})\b", row[3])
        or re.match(rf"SEARCH ({tables}) USING (COVERING )?INDEX \S+ \(model_id=\?\)$", row[3])
    ]


def _run_hot_queries(db: Database) -> list[tuple[str, Any]]:
    """The queries of the hot paths, as the code runs them (captured, then rolled back)."""
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
        # (the service's mark trails the newest face by a commit or two, as here)
        faces.new_faces_after(s, "sface-2021dec", faces.max_face_id(s) - 10)
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
    return seen


@pytest.mark.sqlite_only  # the PostgreSQL counterpart: test_hot_queries_use_indexes_on_postgresql
def test_hot_queries_use_indexes(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        migrate(db.engine)
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        seen = _run_hot_queries(db)
        scans = {stmt: _full_scans(db, stmt, params) for stmt, params in seen}
        bad = {stmt: plan for stmt, plan in scans.items() if plan}
        assert not bad, f"hot queries scan whole tables: {bad}"
    finally:
        db.dispose()


#: A gallery big enough that PostgreSQL's planner prefers an index where one serves: 60 000
#: faces of 30 000 files in 40 collections, under four models.
PG_FILES, PG_FACES, PG_COLLECTIONS = 30_000, 60_000, 40
PG_FILL = [
    "INSERT INTO collections (id, name, description, created_at) "
    "SELECT c, 'c' || c, '', now() FROM generate_series(1, :collections) c",
    "INSERT INTO files (id, collection_id, source, source_kind, content_hash, byte_size, "
    "status, face_count, ingested_at, image_blob) "
    "SELECT f, 1 + f % :collections, '/photos/' || f || '.jpg', 'file', md5(f::text) || "
    "md5(f::text), 1000, 'done', 2, now(), md5('i' || f) || md5('j' || f) "
    "FROM generate_series(1, :files) f",
    "INSERT INTO faces (id, file_id, collection_id, face_index, model_id, runtime, detector, "
    '"left", top, "right", bottom, landmarks, confidence, quality, quality_detail, '
    "low_quality, embedding, crop_blob, created_at) "
    "SELECT i, 1 + i % :files, 1 + (1 + i % :files) % :collections, i / :files, "
    "(ARRAY['sface-2021dec', 'dlib-onnx', 'm3', 'm4'])[1 + i % 4], 'sface', 'yunet', "
    "0, 0, 10, 10, '[]', 0.9, 0.8, '{}', false, '\\x00', md5('c' || i) || md5('d' || i), now() "
    "FROM generate_series(1, :faces) i",
]


def _pg_seq_scans(db: Database, statement: str, params: Any) -> list[str]:
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar()

    def walk(node: dict[str, Any]) -> Iterator[str]:
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in HOT_TABLES:
            yield f"Seq Scan on {node['Relation Name']}"
        for child in node.get("Plans", []):
            yield from walk(child)

    return list(walk(plan[0]["Plan"]))


@pytest.mark.postgresql_only
def test_hot_queries_use_indexes_on_postgresql(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        migrate(db.engine)
        sizes = {"files": PG_FILES, "faces": PG_FACES, "collections": PG_COLLECTIONS}
        with db.engine.begin() as conn:
            for statement in PG_FILL:
                conn.execute(text(statement), sizes)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        seen = _run_hot_queries(db)
        scans = {stmt: _pg_seq_scans(db, stmt, params) for stmt, params in seen}
        bad = {stmt: plan for stmt, plan in scans.items() if plan}
        assert not bad, f"hot queries scan whole tables: {bad}"
        # and the check itself sees a scan where there is one
        assert _pg_seq_scans(db, "SELECT id FROM faces WHERE quality > 0.5", {})
    finally:
        db.dispose()


@pytest.mark.sqlite_only  # on PostgreSQL: the last assertion of the test above
def test_a_full_scan_is_caught(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        migrate(db.engine)
        assert _full_scans(db, "SELECT id FROM faces WHERE quality > ?", (0.5,))
    finally:
        db.dispose()


def test_every_foreign_key_into_faces_and_files_is_indexed(empty_db_url: str) -> None:
    db = Database(empty_db_url)
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
