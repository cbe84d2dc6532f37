"""The SQLite database is a SQLCipher database keyed from the master key (ADR 0010), and a
plaintext database of an older release is encrypted when the deployment is opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from facesearch.config import load_settings
from facesearch.deployment import Deployment, init_deployment
from facesearch.store.accounts import Organisation
from facesearch.store.db import connect_sqlite, current_revision, sqlcipher

pytestmark = pytest.mark.sqlite_only  # SQLCipher; on PostgreSQL encryption at rest is the server's

SECRET = "Heliotrope Shipping Client"


def _deployment(tmp_path: Path) -> Deployment:
    settings = load_settings(tmp_path / "home", key_file=tmp_path / "keys" / "k.key")
    init_deployment(settings)
    return Deployment.open(settings)


def _files(db: Path) -> bytes:
    return b"".join(
        Path(f"{db}{s}").read_bytes() for s in ("", "-wal") if Path(f"{db}{s}").exists()
    )


def test_the_database_cannot_be_read_without_the_key(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    with dep.db.session() as s:
        s.add(Organisation(name=SECRET))
    db = dep.settings.db_path
    assert SECRET.encode() not in _files(db)
    # the standard module sees no database
    with pytest.raises(sqlite3.DatabaseError), sqlite3.connect(db) as plain:
        plain.execute("SELECT count(*) FROM sqlite_master").fetchone()
    wrong = connect_sqlite(db, b"\x01" * 32, readonly=True)
    with pytest.raises(sqlcipher().DatabaseError):
        wrong.execute("SELECT count(*) FROM organisations").fetchone()
    right = connect_sqlite(db, dep.keys.database_key, readonly=True)
    assert right.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert right.execute("SELECT name FROM organisations").fetchall() == [(SECRET,)]
    right.close()
    dep.close()


def test_a_plaintext_database_is_encrypted_when_opened(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    with dep.db.session() as s:
        s.add(Organisation(name=SECRET))
    settings, key = dep.settings, dep.keys.database_key
    revision = current_revision(dep.db.engine)
    dep.close()
    db = settings.db_path
    # make it the plaintext database an older release left behind
    conn = connect_sqlite(db, key)
    plain = db.with_name("plain.db")
    conn.execute(f"ATTACH DATABASE '{plain}' AS plain KEY ''")
    conn.execute("SELECT sqlcipher_export('plain')")
    conn.execute("DETACH DATABASE plain")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    plain.replace(db)
    with sqlite3.connect(db) as old:  # a plaintext WAL with a late write, as a server leaves it
        old.execute("PRAGMA journal_mode=WAL")
        old.execute("UPDATE organisations SET name = name || ' Ltd'")
    assert SECRET.encode() in _files(db)

    reopened = Deployment.open(settings)
    with reopened.db.session() as s:
        assert s.scalars(select(Organisation.name)).all() == [f"{SECRET} Ltd"]
    assert current_revision(reopened.db.engine) == revision
    assert SECRET.encode() not in _files(db)
    assert not db.with_name(db.name + ".encrypting").exists()
    assert db.stat().st_mode & 0o077 == 0
    reopened.close()
