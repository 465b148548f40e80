"""The composition root: builds store, queue, storage, events, engine, service and worker from Settings.

``ltxserve serve`` (embedded: everything in one process), ``serve --no-worker`` (API node) and
``ltxserve worker`` (GPU worker) all start from here; only the settings and the role differ.
The database URL picks the rest: SQLite -> table queue + in-process events; PostgreSQL ->
procrastinate + LISTEN/NOTIFY events. ``s3_bucket`` picks S3 storage over local files.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

from ltxserve import metrics, net, tracing
from ltxserve.blobs import BlobStore, build_blob_store
from ltxserve.config import Settings
from ltxserve.db.database import database_url, private_data_dir
from ltxserve.db.models import utcnow
from ltxserve.db.repository import Store
from ltxserve.delivery import Deliverer
from ltxserve.engine import Engine
from ltxserve.engine.parallel import load_engine
from ltxserve.logs import get_logger
from ltxserve.queue import TaskQueue, build_queue
from ltxserve.queue.base import libpq_url
from ltxserve.service.core import Service
from ltxserve.service.events import EventBus, LocalEventBus, PostgresEventBus
from ltxserve.service.maintenance import Sweeper
from ltxserve.worker.runner import Worker

log = get_logger(__name__)

#: all = embedded (API + worker), api = ``serve --no-worker``, worker = ``ltxserve worker``.
Role = Literal["all", "api", "worker"]
METRICS_REFRESH_S = 5.0


@dataclass
class Runtime:
    settings: Settings
    store: Store
    blobs: BlobStore
    bus: EventBus
    service: Service
    with_worker: bool = True
    engine: Engine | None = None
    worker: Worker | None = None
    queue: TaskQueue | None = None
    role: Role = "all"
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        with_worker: bool = True,
        engine: Engine | None = None,
        role: Role | None = None,
    ) -> Runtime:
        role = role or ("all" if with_worker else "api")
        private_data_dir(settings)
        store = Store(database_url(settings), retry_s=settings.db_retry_s, auth_cache_s=settings.auth_cache_s)
        queue = build_queue(settings, store)
        if queue.name != "table":
            store.enqueue = queue.enqueue  # every transition to queued defers a job, same transaction
        blobs = build_blob_store(settings)
        bus: EventBus = LocalEventBus() if store.is_sqlite else PostgresEventBus(libpq_url(store.url))
        http = net.from_settings(settings)
        deliverer = Deliverer(settings, store, blobs, http)
        service = Service(settings, store, blobs, bus, http=http, deliverer=deliverer, wake=queue.wake)
        if isinstance(bus, PostgresEventBus):
            bus.reloader = _result_payload(service)
        return cls(settings, store, blobs, bus, service, role != "api", engine, queue=queue, role=role)

    async def start(self) -> None:
        await self.store.migrate(auto=self.settings.auto_migrate)
        if self.queue is not None:
            await self.queue.start()
        await self.bus.start()
        if self.with_worker:
            # The API answers (and queues tasks) while the model loads; /readyz says when it is up.
            self._tasks.append(asyncio.create_task(self._run_worker(), name="worker"))
        sweeper = Sweeper(self.settings, self.service, self.queue)
        self._tasks.append(asyncio.create_task(sweeper.run(), name="sweeper"))
        if self.service.deliverer is not None:
            self._tasks.append(asyncio.create_task(self.service.deliverer.run(), name="deliverer"))
        self._tasks.append(asyncio.create_task(self._refresh_metrics(), name="metrics"))

    async def _run_worker(self) -> None:
        if self.engine is None:
            self.engine = await asyncio.to_thread(load_engine, self.settings)
        self.service.capacity = self.engine.plan
        worker = Worker(self.settings, self.service, self.engine, self.queue)
        if self.role == "all" and self.store.is_sqlite:
            # Embedded mode has one worker, this one: whatever was running died with the last
            # process. (On PostgreSQL other workers may be alive: their leases decide.)
            recovered = await self.service.recover(all_running=True)
            if recovered.requeued or recovered.failed:
                log.warning(
                    "recovered tasks from the previous run",
                    requeued=len(recovered.requeued),
                    failed=len(recovered.failed),
                )
        self.worker = worker
        await worker.run()

    async def _refresh_metrics(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.refresh_gauges()
            await asyncio.sleep(METRICS_REFRESH_S)

    async def refresh_gauges(self) -> None:
        """Cluster-wide queue gauges from the database (API nodes also refresh at scrape time)."""
        counts = await self.store.tasks.count_by_status()
        metrics.QUEUE_DEPTH.set(counts["queued"])
        metrics.RUNNING.set(counts["running"])
        _, queued_seconds = await self.service.queue_estimates()
        metrics.QUEUED_GPU_SECONDS.labels(self.service.calibration.model).set(queued_seconds)
        oldest = await self.store.tasks.oldest_queued_at()
        metrics.QUEUE_OLDEST.set(0.0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0.0))

    @property
    def worker_task(self) -> asyncio.Task[None] | None:
        return next((t for t in self._tasks if t.get_name() == "worker"), None)

    async def stop(self) -> None:
        """SIGTERM: the worker drains or gives back the task in hand (``sigterm_action``), then
        everything closes."""
        if self.worker is not None:
            self.worker.stop()
        for task in self._tasks:
            if task.get_name() == "worker" and self.worker is not None:
                # drain the task in hand, or (preemption) wait for its checkpoint and release
                preempting = self.settings.sigterm_action == "checkpoint"
                grace = self.settings.preempt_grace_s if preempting else None
                try:
                    await asyncio.wait_for(asyncio.shield(task), grace)
                except asyncio.CancelledError:
                    pass
                except TimeoutError:
                    log.warning("preemption grace time ran out; exiting with the task in hand")
                    task.cancel()
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        if self.queue is not None:
            await self.queue.stop()
        await self.bus.stop()
        await self.store.close()
        await asyncio.to_thread(tracing.flush)  # the last spans (deliveries, the drained task)

    async def readiness(self) -> dict[str, str]:
        """Component name -> ``ok`` / ``error`` / ``loading``; why a check failed goes to the log
        only (exception text can name hosts, paths and databases)."""
        checks: dict[str, str] = {}
        try:
            await self.store.ping()
            checks["store"] = "ok"
        except Exception as exc:
            log.warning("readiness: database check failed", error=str(exc))
            checks["store"] = "error"
        try:
            await self.blobs.ping()
            checks["storage"] = "ok"
        except Exception as exc:
            log.warning("readiness: storage check failed", error=str(exc))
            checks["storage"] = "error"
        if self.with_worker:
            checks["model"] = "ok" if self.worker is not None else "loading"
        return checks


def _result_payload(service: Service) -> Any:
    """The ``result`` event payload of a finished task, rebuilt from the store (large events)."""

    async def load(task_id: str) -> dict[str, Any] | None:
        task = await service.store.tasks.get(task_id)
        if task is None:
            return None
        reply = await service.result_items_with_uploads(task)
        return {"data": reply.data, "errors": [e.to_wire() for e in reply.errors]}

    return load
