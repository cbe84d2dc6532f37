"""`facesearch worker`: run the deployment's queued jobs (job_runner = procrastinate), on any host.

A worker is a procrastinate worker on the deployment's PostgreSQL database that runs the one
facesearch task (`store.queue.TASK_RUN_JOB`) with `ingest.jobs.run_queued`: the same
`FolderIngest` and re-embed code the in-process runner uses, writing progress, summary and
failures to the same `ingest_tasks` row. It commits faces to the database only (the embedded
segment index is the serving host's, which catches up; `Deployment.index_for`).

Workers heartbeat every `worker_heartbeat_seconds`. Every worker also looks, as often, for jobs
whose worker has been silent for `worker_stalled_seconds` (killed, its host gone) and puts them
back in the queue; the next worker to take one resumes it (`run_queued`). A job whose run
raises (the database gone for a moment) is retried up to five times, ten seconds apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import procrastinate

from facesearch.deployment import Deployment
from facesearch.ingest.jobs import run_queued
from facesearch.store import queue

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"facesearch@{socket.gethostname()}:{os.getpid()}"


async def retry_stalled(app: Any, stalled_seconds: float, queue_name: str | None) -> int:
    """Put back in the queue every job whose worker stopped heartbeating; returns how many."""
    retried = 0
    manager = app.job_manager
    await manager.prune_stalled_workers(stalled_seconds)
    for job in await manager.get_stalled_jobs(
        queue=queue_name, seconds_since_heartbeat=stalled_seconds
    ):
        try:
            await manager.retry_job(job)
        except Exception as exc:  # another worker retried it first
            log.info("stalled job %s not retried here: %s", job.id, exc)
            continue
        log.warning("job %s (%s) stalled: its worker is gone; retrying", job.id, job.task_name)
        retried += 1
    return retried


def run_worker(
    dep: Deployment,
    *,
    concurrency: int = 1,
    queues: list[str] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run jobs until SIGINT or SIGTERM (a graceful stop: running jobs finish first)."""
    settings = dep.settings
    dep.writes_local_index = False
    queues = queues or [settings.job_queue]
    app = queue.open_app(settings.sqlalchemy_url, asynchronous=True)
    processes = settings.worker_count

    def run_job(context: Any, task_id: int, spec: dict[str, Any]) -> None:
        attempt = int(context.job.attempts) + 1
        log.info("job %s (%s), attempt %s", task_id, spec.get("kind"), attempt)
        run_queued(dep, task_id, spec, workers=processes, attempt=attempt)

    # run_queued records every failure of the job itself on its row; what escapes it is the
    # infrastructure (the database unreachable): retried, and a retry resumes
    retry = procrastinate.RetryStrategy(max_attempts=5, wait=10)
    app.task(name=queue.TASK_RUN_JOB, pass_context=True, retry=retry)(run_job)

    async def watch_stalled() -> None:
        while True:  # at start (a restarted worker picks up its own dead jobs), then regularly
            for name in queues:
                try:
                    await retry_stalled(app, settings.worker_stalled_seconds, name)
                except Exception:
                    log.exception("looking for stalled jobs failed")
            await asyncio.sleep(settings.worker_heartbeat_seconds)

    dep.model_for(dep.default_model_id)  # loaded before the first job, and checked

    async def main() -> None:
        async with app.open_async():
            watcher = asyncio.create_task(watch_stalled(), name="stalled jobs")
            if on_ready is not None:
                on_ready()
            try:
                await app.run_worker_async(
                    queues=queues,
                    concurrency=concurrency,
                    name=worker_name(),
                    update_heartbeat_interval=settings.worker_heartbeat_seconds,
                    stalled_worker_timeout=settings.worker_stalled_seconds,
                    install_signal_handlers=True,
                    delete_jobs="successful",
                )
            finally:
                watcher.cancel()

    asyncio.run(main())
