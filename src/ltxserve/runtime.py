"""The composition root: builds store, storage, events, engine, service and worker from Settings.

``ltxserve serve`` (embedded: everything in one process), ``serve --no-worker`` and
``ltxserve worker`` all start from here; only the settings differ.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from ltxserve import net
from ltxserve.config import Settings
from ltxserve.delivery import Deliverer
from ltxserve.engine import Engine
from ltxserve.logs import get_logger
from ltxserve.service.core import Service
from ltxserve.service.events import EventBus, LocalEventBus
from ltxserve.service.maintenance import Sweeper
from ltxserve.storage import BlobStore, LocalBlobStore
from ltxserve.store.repository import Store
from ltxserve.worker.runner import Worker

log = get_logger(__name__)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        url = settings.database_url
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{settings.data_dir.resolve() / 'ltxserve.db'}"


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
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, *, with_worker: bool = True, engine: Engine | None = None) -> Runtime:
        store = Store(database_url(settings))
        blobs = LocalBlobStore(settings.data_dir / "files")
        bus = LocalEventBus()
        http = net.from_settings(settings)
        deliverer = Deliverer(settings, store, blobs, http)
        service = Service(settings, store, blobs, bus, http=http, deliverer=deliverer)
        return cls(settings, store, blobs, bus, service, with_worker, engine)

    async def start(self) -> None:
        await self.store.create_all()
        await self.bus.start()
        if self.with_worker:
            # The API answers (and queues tasks) while the model loads; /readyz says when it is up.
            self._tasks.append(asyncio.create_task(self._run_worker(), name="worker"))
        self._tasks.append(asyncio.create_task(Sweeper(self.settings, self.service).run(), name="sweeper"))
        if self.service.deliverer is not None:
            self._tasks.append(asyncio.create_task(self.service.deliverer.run(), name="deliverer"))

    async def _run_worker(self) -> None:
        if self.engine is None:
            self.engine = await asyncio.to_thread(Engine.load, self.settings)
        self.service.capacity = self.engine.plan
        worker = Worker(self.settings, self.service, self.engine)
        self.service.wake = worker.wake
        # Embedded mode has one worker, this one: whatever was running died with the last process.
        recovered = await self.store.recover(self.settings.max_attempts, all_running=True)
        if recovered.requeued or recovered.failed:
            log.warning(
                "recovered tasks from the previous run",
                requeued=len(recovered.requeued),
                failed=len(recovered.failed),
            )
        self.worker = worker
        await worker.run()

    async def stop(self) -> None:
        """Drain: the worker finishes the task in hand (SIGTERM), then everything closes."""
        if self.worker is not None:
            self.worker.stop()
        for task in self._tasks:
            if task.get_name() == "worker" and self.worker is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # drain the task in hand
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        await self.bus.stop()
        await self.store.close()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await self.store.ping()
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"error: {exc}"
        try:
            await self.blobs.ping()
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"error: {exc}"
        if self.with_worker:
            checks["model"] = "ok" if self.worker is not None else "loading"
        return checks
