"""The private PostgreSQL cluster the suite runs against (scripts/pg-test-cluster.sh).

`.ci/run` starts the cluster and exports `FACESEARCH_TEST_PG` (an admin URL); `conftest` reads
it before clearing the developer's FACESEARCH_ variables. Without it, PostgreSQL tests skip with
a message locally and fail in CI (`CI` set), so CI can never pass by skipping them."""

from __future__ import annotations

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
