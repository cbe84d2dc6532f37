"""Engine and sessions. SQLite in WAL mode by default; any SQLAlchemy URL (PostgreSQL) works.

Given a key, a SQLite database is a SQLCipher database (ADR 0010): every page of the file, its
WAL and its free pages is encrypted; the key (a raw 32-byte key derived from the master key) is
the first statement of every connection. `encrypt_plaintext` turns an existing plaintext
database into an encrypted one. Nothing else may open the file: `connect_sqlite` is the one way
for tools (the doctor) and tests."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def sqlcipher() -> Any:
    """The SQLCipher DB-API module (PyPI sqlcipher3-binary)."""
    import sqlcipher3

    return sqlcipher3.dbapi2


def key_pragma(key: bytes) -> str:
    if len(key) != 32:
        raise ValueError("a database key is 32 bytes")
    return f"PRAGMA key = \"x'{key.hex()}'\""


def connect_sqlite(path: Path, key: bytes | None, *, readonly: bool = False) -> Any:
    """A DB-API connection to the database file (SQLCipher when `key` is given); read-only
    connections never create a missing file."""
    module = sqlcipher() if key is not None else __import__("sqlite3")
    if readonly:
        uri = path.resolve().as_uri() + "?mode=ro"
        conn = module.connect(uri, uri=True, timeout=30, check_same_thread=False)
    else:
        conn = module.connect(str(path), timeout=30, check_same_thread=False)
    if key is not None:
        conn.execute(key_pragma(key))
    return conn


def encrypt_plaintext(path: Path, key: bytes) -> bool:
    """Encrypt a plaintext SQLite database in place (True when it was plaintext). The WAL is
    checkpointed, `sqlcipher_export` writes an encrypted copy beside it, the copy replaces the
    original in one rename and the plaintext -wal and -shm are removed. Needs the only process
    on the file (stop the service first)."""
    if not path.exists():
        return False
    module = sqlcipher()
    conn = module.connect(str(path), timeout=30)
    try:
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except module.DatabaseError:
            return False  # already encrypted
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
        staging = path.with_name(path.name + ".encrypting")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{staging}{suffix}").unlink(missing_ok=True)
        conn.execute(f"ATTACH DATABASE ? AS encrypted KEY \"x'{key.hex()}'\"", (str(staging),))
        conn.execute("SELECT sqlcipher_export('encrypted')")
        conn.execute("DETACH DATABASE encrypted")
    finally:
        conn.close()
    os.chmod(staging, 0o600)
    os.replace(staging, path)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return True


def make_engine(url: str, key: bytes | None = None) -> Engine:
    if url.startswith("sqlite"):
        extra: dict[str, Any] = {"module": sqlcipher()} if key is not None else {}
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **extra
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if key is not None:
                cur.execute(key_pragma(key))  # before anything reads a page
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def metadata() -> MetaData:
    """Every table of the schema (each table module registers on the one declarative base)."""
    from facesearch.store import accounts, audit, casework, gallery, jobs  # noqa: F401
    from facesearch.store.base import Base

    return Base.metadata


#: Revisions that no longer exist, and the revision they are equivalent to.
RETIRED_REVISIONS = {"0003": "0002"}  # 0003 was an empty placeholder


@functools.cache
def head_revision() -> str:
    """The newest revision, read from the migration files (without importing Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if found := re.search(r'^revision\s*=\s*"([^"]+)"', text, re.M):
            revisions.add(found.group(1))
        if found := re.search(r'^down_revision\s*=\s*"([^"]+)"', text, re.M):
            parents.add(found.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (nothing to import or run when the
    database is there already: every CLI command opens the database)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if current == head_revision():
            return
    except DBAPIError:
        pass  # no version table yet: a new database
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        for old, same in RETIRED_REVISIONS.items():
            if current_revision_of(conn) == old:
                conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": same})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision_of(conn: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


#: session.info keys: the audit chain's MAC key, and the (id, hash) of the last entry appended
#: in the session's current transaction (read by the after-commit hook).
AUDIT_KEY = "facesearch.audit_key"
AUDIT_APPENDED = "facesearch.audit_appended"


class Database:
    """One engine and its session factory.

    `key` is SQLCipher's raw key for an embedded SQLite database (ADR 0010); `audit_key` is the
    audit chain's MAC key, handed to every session (`session.info`); `on_audit_commit(length,
    head)` runs after each commit that appended audit entries (the deployment writes its signed
    checkpoint there)."""

    def __init__(
        self,
        url: str,
        key: bytes | None = None,
        *,
        audit_key: bytes | None = None,
        on_audit_commit: Callable[[int, str], None] | None = None,
    ) -> None:
        self.url = url
        self.engine = make_engine(url, key)
        self.audit_key = audit_key
        self.on_audit_commit = on_audit_commit
        self._sessions = sessionmaker(
            self.engine, expire_on_commit=False, info={AUDIT_KEY: audit_key}
        )
        event.listen(self._sessions, "after_commit", self._after_commit)
        event.listen(self._sessions, "after_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        appended = session.info.pop(AUDIT_APPENDED, None)
        if appended is not None and self.on_audit_commit is not None:
            self.on_audit_commit(int(appended[0]), str(appended[1]))

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(AUDIT_APPENDED, None)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on any exception."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
