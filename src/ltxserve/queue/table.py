"""The embedded queue: the tasks table itself, oldest queued task first."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncSession

from ltxserve.db.repository import Store
from ltxserve.logs import get_logger
from ltxserve.queue.base import Handler

log = get_logger(__name__)

POLL_S = 1.0


class TableQueue:
    """Nothing to enqueue (the row is the job); ``wake`` saves the poll interval in-process."""

    name = "table"

    def __init__(self, store: Store) -> None:
        self.store = store
        self._wakeup = asyncio.Event()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def enqueue(self, session: AsyncSession, task_id: str) -> None:
        return None

    def wake(self) -> None:
        self._wakeup.set()

    async def recover(self) -> int:
        return 0  # leases in the tasks table are the whole story (Store.recover)

    async def consume(self, handle: Handler, stopping: asyncio.Event) -> None:
        delay = POLL_S
        while not stopping.is_set():
            try:
                task_id = await self.store.tasks.next_queued()
                if task_id is not None:
                    await handle(task_id)
                    delay = POLL_S
                    continue
            except Exception:
                log.exception("table queue: cannot take the next task; retrying")
                delay = min(delay * 2, 10.0)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
            if stopping.is_set():
                return
