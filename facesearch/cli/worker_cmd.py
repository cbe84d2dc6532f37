"""`facesearch worker`: run queued ingest jobs (job_runner = procrastinate) on this host."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from facesearch.cli.common import console_err, state_of
from facesearch.errors import ConfigError


def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Jobs run at once (threads sharing one model; default 1)."
        ),
    ] = 1,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            help="Queue to take jobs from; repeat for several (default: the job_queue setting).",
        ),
    ] = None,
) -> None:
    """Take ingest jobs (uploads, server folders, re-embeds) from the deployment's PostgreSQL job
    queue and run them here, until SIGINT or SIGTERM. Needs job_runner = procrastinate, the
    deployment's settings and its master key (a worker is as trusted as the service)."""
    from facesearch.deployment import Deployment
    from facesearch.ingest.queue_worker import run_worker, worker_name

    settings = state_of(ctx).settings()
    if not settings.uses_job_queue:
        raise ConfigError(
            "`facesearch worker` needs job_runner = procrastinate (and database_url on "
            "PostgreSQL); with job_runner = inprocess the service runs its jobs itself"
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    dep = Deployment.open(settings)
    queues = list(queue or [settings.job_queue])

    def ready() -> None:
        console_err.print(
            f"worker {worker_name()} ready: queues {', '.join(queues)}, concurrency {concurrency}"
        )

    try:
        run_worker(dep, concurrency=concurrency, queues=queues, on_ready=ready)
    finally:
        dep.close()


def register(app: typer.Typer) -> None:
    app.command()(worker)
