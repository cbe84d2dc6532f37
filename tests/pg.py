"""The private PostgreSQL cluster the suite runs against (scripts/pg-test-cluster.sh).

`.ci/run` starts the cluster and exports `FACESEARCH_TEST_PG` (an admin URL); `conftest` reads
it before clearing the developer's FACESEARCH_ variables. Without it, PostgreSQL tests skip with
a message locally and fail in CI (`CI` set), so CI can never pass by skipping them."""

from __future__ import annotations

import contextlib
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

ADMIN_URL: str | None = os.environ.get("FACESEARCH_TEST_PG")

HOW = (
    "needs a PostgreSQL cluster: `export FACESEARCH_TEST_PG=$(bash scripts/pg-test-cluster.sh "
    "start /tmp/fs-pg)` (Debian's postgresql package)"
)


def require_pg() -> str:
    if ADMIN_URL:
        return ADMIN_URL
    if os.environ.get("CI"):
        pytest.fail("FACESEARCH_TEST_PG is not set in CI: " + HOW)
    pytest.skip(HOW)


def sqlalchemy_url(url: str, database: str | None = None) -> str:
    """`url` with the psycopg (v3) driver and, given one, another database name."""
    parts = urlsplit(url)
    scheme = "postgresql+psycopg"
    path = f"/{database}" if database else parts.path
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


def create_database() -> str:
    """A new, empty database on the test cluster; returns its SQLAlchemy URL."""
    import psycopg

    admin = require_pg()
    name = "fs_" + uuid.uuid4().hex[:16]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return sqlalchemy_url(admin, name)


def drop_database(url: str) -> None:
    import psycopg

    admin = require_pg()
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the suite on PostgreSQL (FACESEARCH_TEST_BACKEND=postgresql) --------------------------------
#
# Read here, before conftest clears the FACESEARCH_ variables. Each deployment the shared
# fixtures create gets a database of its own, copied from a template that is migrated once per
# session (`CREATE DATABASE … TEMPLATE …`: milliseconds instead of running every migration), and
# dropped after the test (or the module, for a module's shared deployment) that created it.

BACKEND: str = os.environ.get("FACESEARCH_TEST_BACKEND", "sqlite").strip().lower() or "sqlite"
if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"FACESEARCH_TEST_BACKEND must be sqlite or postgresql, not {BACKEND!r}")
ON_PG: bool = BACKEND == "postgresql"

SQLITE_ONLY_REASON = "SQLite-only, this run is on PostgreSQL (FACESEARCH_TEST_BACKEND=postgresql)"
PG_ONLY_REASON = "PostgreSQL-only, they run in the FACESEARCH_TEST_BACKEND=postgresql run"

#: The role the deployments connect as: it owns its databases but is no superuser (as the
#: operator's guide asks, docs/scaling.md), so the doctor's superuser check stays quiet.
ROLE = "facesearch_test"

_template: str | None = None
#: databases created for deployments, by the scope of the fixture (or test) that created them
_created: dict[str, list[str]] = {}
#: the scopes of the fixtures being set up right now (conftest's pytest_fixture_setup hook)
scope_stack: list[str] = []


def _template_name() -> str:
    """The session's migrated template database (created on first use)."""
    global _template
    if _template is None:
        import psycopg

        from facesearch.store.db import Database, migrate

        admin = require_pg()
        name = "fs_template_" + uuid.uuid4().hex[:12]
        with psycopg.connect(admin, autocommit=True) as conn:
            known = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
            if known is None:
                # another session of the cluster may create it first
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(f"CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            conn.execute(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        db = Database(role_url(admin, name))
        try:
            migrate(db.engine)
        finally:
            db.dispose()
        _template = name
    return _template


def role_url(admin: str, database: str) -> str:
    """The SQLAlchemy URL of `database` on the test cluster, as the deployments' role."""
    parts = urlsplit(sqlalchemy_url(admin, database))
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{ROLE}@{host}", parts.path, parts.query, parts.fragment))


def deployment_database() -> str:
    """A fresh database at the schema's head for one deployment; dropped when the test (or the
    module-scoped fixture) that asked for it ends."""
    import psycopg

    admin = require_pg()
    template = _template_name()
    name = "fs_" + uuid.uuid4().hex[:16]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {ROLE} TEMPLATE "{template}"')
    url = role_url(admin, name)
    scope = scope_stack[-1] if scope_stack else "function"
    _created.setdefault(scope, []).append(url)
    return url


def drop_created(scopes: tuple[str, ...]) -> None:
    """Drop the deployment databases created at these fixture scopes."""
    for scope in scopes:
        for url in _created.pop(scope, []):
            drop_database(url)


def drop_all() -> None:
    """Drop every database the session created, the template last."""
    global _template
    drop_created(tuple(_created))
    if _template is not None and ADMIN_URL:
        drop_database(sqlalchemy_url(ADMIN_URL, _template))
        _template = None


def remember_in_settings_file(settings: object) -> None:
    """Write a deployment's database URL into its facesearch.toml, so that everything that
    reopens the data directory later (the CLI with --home, `load_settings(home)`) finds the same
    database. The test cluster trusts loopback connections: the URL carries no password."""
    from facesearch.config import Settings

    assert isinstance(settings, Settings)
    url = settings.database_url
    if not ON_PG or not url:
        return
    path = settings.settings_file
    text = path.read_text()
    if "\ndatabase_url" in text:
        return
    path.write_text(text.rstrip("\n") + f'\ndatabase_url = "{url}"\n')


def drop_append_only_trigger(conn: object, refuses: str = "update") -> str:
    """Drop the audit log's trigger that refuses `refuses` (update or delete) on the
    connection's backend, as an attacker with the database's owner role would; returns its
    name. On PostgreSQL one trigger refuses UPDATE, DELETE and TRUNCATE."""
    from sqlalchemy import Connection, text

    assert isinstance(conn, Connection)
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP TRIGGER audit_log_no_change ON audit_log"))
        return "audit_log_no_change"
    name = "audit_log_no_update" if refuses == "update" else "audit_log_no_delete"
    conn.execute(text(f"DROP TRIGGER {name}"))
    return name


class RawDatabase:
    """A deployment's database as an intruder with write access (and the key file) sees it: raw
    SQL on a connection of its own, outside facesearch's sessions, on SQLite (SQLCipher) or
    PostgreSQL alike. Parameters are named (`:name`, a dict) or positional (`?`, a tuple)."""

    def __init__(self, dep: object) -> None:
        from facesearch.deployment import Deployment, database_key
        from facesearch.store.db import make_engine

        assert isinstance(dep, Deployment)
        self.engine = make_engine(dep.settings.sqlalchemy_url, database_key(dep.settings, dep.keys))
        self.conn = self.engine.connect()
        self.dialect: str = self.engine.dialect.name

    def execute(self, sql: str, params: object = None) -> object:
        from sqlalchemy import text

        if isinstance(params, tuple):
            parts = sql.split("?")
            assert len(parts) == len(params) + 1, sql
            sql = "".join(p + (f":p{i}" if i < len(params) else "") for i, p in enumerate(parts))
            params = {f"p{i}": v for i, v in enumerate(params)}
        return self.conn.execute(text(sql), params or {})

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


#: The append-only triggers of migration 0002, per dialect (to put back after an attack).
APPEND_ONLY_DDL = {
    "sqlite": [
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ],
    "postgresql": [
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    ],
}


def cli_env() -> dict[str, str]:
    """The environment of a CLI test's commands: on PostgreSQL a new database of its own,
    passed as an operator would, through FACESEARCH_DATABASE_URL."""
    return {"FACESEARCH_DATABASE_URL": deployment_database()} if ON_PG else {}
