"""Engine and sessions. SQLite in WAL mode by default; any SQLAlchemy URL (PostgreSQL) works."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
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


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

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

    `audit_key` is the audit chain's MAC key, handed to every session (`session.info`);
    `on_audit_commit(length, head)` runs after each commit that appended audit entries (the
    deployment writes its signed checkpoint there)."""

    def __init__(
        self,
        url: str,
        *,
        audit_key: bytes | None = None,
        on_audit_commit: Callable[[int, str], None] | None = None,
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
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
