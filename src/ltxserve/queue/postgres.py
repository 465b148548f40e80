"""The scale-out queue: procrastinate on PostgreSQL delivers task ids to ``ltxserve worker``.

Why procrastinate (over pgqueuer, see docs/scale-out.md): a job can be deferred on our own psycopg
connection inside the transaction that inserts the task row (pgqueuer's psycopg driver needs
an autocommit connection, so its enqueue cannot join that transaction), and it is the more
widely used and documented of the two. What it does here:

* **delivery**: one job ``ltxserve.run_task(task_id)`` per transition to ``queued``; workers
  fetch with ``FOR UPDATE SKIP LOCKED`` and are woken by LISTEN/NOTIFY on insert.
* **heartbeats**: each worker process heartbeats in ``procrastinate_workers``.
* **stalled jobs**: procrastinate detects them (a worker whose heartbeat is older than the
  lease) but does not re-queue them itself; ``recover`` (called by the sweeper of every
  process) retries them, and ``reconcile`` gives a job to any queued task that lost its own.

Whether a re-delivered task may run is decided by the tasks table, not by the job: the worker
claims the row (queued, or running under an expired lease: a takeover that counts an attempt),
so duplicate jobs are harmless and the attempt bound holds whatever the queue does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import procrastinate
from procrastinate.job_context import JobContext
from sqlalchemy.ext.asyncio import AsyncSession

from ltxserve.config import Settings
from ltxserve.db.lifecycle import TaskStatus
from ltxserve.logs import get_logger
from ltxserve.queue.base import Handler, libpq_url

log = get_logger(__name__)

QUEUE = "ltxserve"
TASK_NAME = "ltxserve.run_task"

# Queued tasks without a live job (todo/doing): re-deferred by ``reconcile``. The age guard keeps
# it off tasks whose submitting transaction is still being committed.
ORPHANS = """
SELECT t.id FROM tasks t
 WHERE t.status = %(queued)s
   AND t.created_at < NOW() - INTERVAL '10 seconds'
   AND NOT EXISTS (
       SELECT 1 FROM procrastinate_jobs j
        WHERE j.task_name = %(task_name)s
          AND j.status IN ('todo', 'doing')
          AND j.args ->> 'task_id' = t.id)
 LIMIT 500
"""


class ProcrastinateQueue:
    name = "procrastinate"

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=libpq_url(url), min_size=1, max_size=4),
        )
        self._handler: Handler | None = None
        self._opened = False

        @self.app.task(name=TASK_NAME, queue=QUEUE, pass_context=True)
        async def run_task(context: JobContext, task_id: str) -> None:
            if self._handler is None:
                raise RuntimeError("job fetched by a process that runs no worker")
            await self._handler(task_id)

        self.task = run_task

    async def start(self) -> None:
        if not self._opened:
            await self.app.open_async()
            self._opened = True

    async def stop(self) -> None:
        if self._opened:
            await self.app.close_async()
            self._opened = False

    async def enqueue(self, session: AsyncSession, task_id: str) -> None:
        """Defer on the session's own psycopg connection: the job commits (or rolls back) with
        the task row, so a task is never queued without a job nor a job left without a task."""
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        await self.task.configure(connection=raw.driver_connection).defer_async(task_id=task_id)

    def wake(self) -> None:
        return None  # the job insert NOTIFYs every listening worker on commit

    async def recover(self) -> int:
        """Retry the jobs of workers that stopped heartbeating, then re-defer orphaned tasks."""
        manager = self.app.job_manager
        stalled = list(
            await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.settings.lease_s)
        )
        retried = 0
        for job in stalled:
            try:
                await manager.retry_job(job)
            except procrastinate.exceptions.ConnectorException:
                # Another node's sweeper may have retried it between our listing and now (the
                # database then refuses: "invalid status to retry"): fine when it left 'doing'.
                assert job.id is not None
                current = list(await manager.list_jobs_async(id=job.id))
                if current and current[0].status == "doing":
                    raise
                log.info("stalled queue job already handled by another node", job_id=job.id)
                continue
            retried += 1
            log.warning("queue job of a dead worker re-delivered", job_id=job.id, task_id=job.task_kwargs)
        return retried + await self.reconcile()

    async def reconcile(self) -> int:
        rows = await self.app.connector.execute_query_all_async(
            query=ORPHANS, task_name=TASK_NAME, queued=TaskStatus.QUEUED.value
        )
        for row in rows:
            log.warning("queued task had no queue job; deferring one", task_id=row["id"])
            await self.task.defer_async(task_id=row["id"])
        return len(rows)

    async def consume(self, handle: Handler, stopping: asyncio.Event) -> None:
        """Run procrastinate's worker (one job at a time) until ``stopping``; restart it if it
        stops by itself (it does when its heartbeat or listener loses the database)."""
        self._handler = handle
        delay = 0.5
        options: dict[str, Any] = {
            "queues": [QUEUE],
            "concurrency": 1,
            "wait": True,
            "install_signal_handlers": False,
            "update_heartbeat_interval": self.settings.heartbeat_s,
            "stalled_worker_timeout": self.settings.lease_s,
            "fetch_job_polling_interval": max(self.settings.heartbeat_s, 1.0),
            "abort_job_polling_interval": 60.0,
            "listen_notify": True,
            "delete_jobs": "successful",
        }
        while not stopping.is_set():
            started = asyncio.get_running_loop().time()
            run = asyncio.create_task(self.app.run_worker_async(**options), name="procrastinate-worker")
            stop = asyncio.create_task(stopping.wait())
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                # Cancelling procrastinate's worker stops fetching and waits for the job in hand.
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
                return
            stop.cancel()
            if asyncio.get_running_loop().time() - started > 60:
                delay = 0.5  # it had been running fine: restart quickly
            exc = run.exception()
            log.warning("queue worker stopped by itself; restarting", error=repr(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
