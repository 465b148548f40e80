"""Periodic housekeeping: expired leases back to the queue, expired files deleted."""

from __future__ import annotations

import asyncio

from ltxserve.config import Settings
from ltxserve.logs import get_logger
from ltxserve.service.core import Service

log = get_logger(__name__)


class Sweeper:
    def __init__(self, settings: Settings, service: Service) -> None:
        self.settings = settings
        self.service = service

    async def run_once(self) -> None:
        store, blobs = self.service.store, self.service.blobs
        recovered = await store.recover(self.settings.max_attempts)
        for task_id in recovered.requeued:
            log.warning("lease expired: task back in the queue", task_id=task_id)
        for task_id in recovered.failed:
            log.error("task gave up after too many attempts", task_id=task_id)
            task = await store.get_task(task_id)
            if task is not None:
                await self.service.publish_results(task)
        if recovered.requeued:
            self.service.wake()
        for result in await store.expired_results():
            if result.storage_key:
                await blobs.delete(result.storage_key)
            await store.mark_deleted(result.id)
            log.info("output expired", video_uuid=result.video_uuid, key=result.storage_key)
        for upload in await store.expired_uploads():
            await blobs.delete(upload.storage_key)
            await store.delete_upload(upload.image_uuid)

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.settings.sweep_interval_s)
