"""Periodic housekeeping: expired leases back to the queue, expired files deleted.

Every process runs it (API nodes and workers alike): each step is a guarded update, so two
sweepers at once do the work once. On S3 the TTL is enforced here too (objects are deleted when
their result expires), not by bucket lifecycle rules, so a file is gone exactly when its
``ttl`` says and the API answers 404 from then on, whatever the store.
"""

from __future__ import annotations

import asyncio

from ltxserve.config import Settings
from ltxserve.logs import get_logger
from ltxserve.queue import TaskQueue
from ltxserve.service.core import Service

log = get_logger(__name__)


class Sweeper:
    def __init__(self, settings: Settings, service: Service, queue: TaskQueue | None = None) -> None:
        self.settings = settings
        self.service = service
        self.queue = queue

    async def run_once(self) -> None:
        """Every step, each on its own: one that fails (another node did the work first, the
        object store is down) is logged and the others still run in this sweep."""
        for name, step in (
            ("leases", self._leases),
            ("queue", self._queue),
            ("outputs", self._outputs),
            ("uploads", self._uploads),
        ):
            try:
                await step()
            except Exception:
                log.exception("sweep step failed; the other steps still run", step=name)

    async def _leases(self) -> None:
        recovered = await self.service.recover()
        if recovered.requeued:
            self.service.wake()

    async def _queue(self) -> None:
        if self.queue is not None:
            await self.queue.recover()  # jobs of dead workers, queued tasks without a job

    async def _outputs(self) -> None:
        store, blobs = self.service.store, self.service.blobs
        for result in await store.tasks.expired_results():
            if result.storage_key:
                await blobs.delete(result.storage_key)
            await store.tasks.mark_deleted(result.id)
            log.info("output expired", video_uuid=result.video_uuid, key=result.storage_key)

    async def _uploads(self) -> None:
        store, blobs = self.service.store, self.service.blobs
        for upload in await store.uploads.expired():
            await blobs.delete(upload.storage_key)
            await store.uploads.delete(upload.image_uuid)

    async def run(self) -> None:
        """Sweep every ``sweep_interval_s`` until cancelled; a failed sweep is logged and retried."""
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.settings.sweep_interval_s)
