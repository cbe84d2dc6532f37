"""The job queue on PostgreSQL (procrastinate), for `job_runner = "procrastinate"`.

Procrastinate's tables, types and functions live in the schema `procrastinate` of the
deployment's own database (never beside facesearch's tables in `public`): `ensure_schema`
applies procrastinate's bundled schema there when it is missing, and the deployment calls it
right after its Alembic upgrade, so `facesearch init` and every open of a queue deployment (the
service, `facesearch worker`) set it up. Every connection procrastinate opens has
`search_path = procrastinate`.

This module knows nothing of what a job does: `open_app` gives the procrastinate `App` (the
service defers to it, workers register their tasks on it), `defer` queues a task by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from sqlalchemy import Engine, make_url, text

from facesearch.errors import ConfigError

SCHEMA = "procrastinate"
#: the facesearch tasks (defined and run by `ingest.queue_worker`)
TASK_RUN_JOB = "facesearch.run_job"
#: the advisory lock namespace of `job_lock` (the first of PostgreSQL's two keys)
JOB_LOCK_NAMESPACE = 0x46534A42  # "FSJB"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def conninfo(url: str) -> str:
    """A libpq connection string for procrastinate from the SQLAlchemy URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            "job_runner = procrastinate needs the deployment's database on PostgreSQL "
            "(database_url = postgresql+psycopg://…); the embedded SQLite database cannot be "
            "shared with workers on other hosts. Use job_runner = inprocess, or move to "
            "PostgreSQL."
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_schema(engine: Engine) -> bool:
    """Apply procrastinate's schema in the schema `procrastinate` unless it is there (True when
    it was applied). Idempotent; one transaction."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": JOB_LOCK_NAMESPACE})
        present = conn.scalar(text("SELECT to_regclass('procrastinate.procrastinate_jobs')"))
        if present is not None:
            return False
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        conn.execute(text(f"SET LOCAL search_path TO {SCHEMA}"))
        sql = (resources.files("procrastinate.sql") / "schema.sql").read_text("utf-8")
        conn.exec_driver_sql(sql.replace("%", "%%"))
    return True


def open_app(url: str, *, asynchronous: bool = False) -> Any:
    """A procrastinate `App` on the deployment's database (not yet opened). `asynchronous`:
    for a worker (an async pool); else for deferring from synchronous code."""
    import procrastinate

    info = conninfo(url)
    options = f"-c search_path={SCHEMA}"
    connector: Any
    if asynchronous:
        connector = procrastinate.PsycopgConnector(
            conninfo=info, kwargs={"options": options}, min_size=1, max_size=4
        )
    else:
        connector = procrastinate.SyncPsycopgConnector(
            conninfo=info, kwargs={"options": options}, min_size=0, max_size=2
        )
    return procrastinate.App(connector=connector)


def defer(app: Any, queue: str, task_name: str, **kwargs: Any) -> int:
    """Queue `task_name` with `kwargs` (JSON) on `queue`; returns procrastinate's job id."""
    job_id: int = app.configure_task(name=task_name, queue=queue, allow_unknown=True).defer(
        **kwargs
    )
    return job_id


@contextmanager
def job_lock(engine: Engine, job_id: int) -> Iterator[None]:
    """Hold job `job_id`'s lock for the block (PostgreSQL: a session advisory lock on a
    connection of its own, waited for; it goes with the connection, so a worker killed with -9
    releases it). On SQLite, where one process runs the jobs, nothing."""
    if engine.dialect.name != "postgresql":
        yield
        return
    keys = {"ns": JOB_LOCK_NAMESPACE, "id": int(job_id)}
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:ns, :id)"), keys)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:ns, :id)"), keys)
            conn.commit()
