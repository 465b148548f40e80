"""Task queues: which backend hands task ids to workers (see ``ltxserve.queue.base``)."""

from __future__ import annotations

from ltxserve.config import Settings
from ltxserve.db.repository import Store
from ltxserve.queue.base import Handler, TaskQueue
from ltxserve.queue.table import TableQueue

__all__ = ["Handler", "TableQueue", "TaskQueue", "build_queue"]


def build_queue(settings: Settings, store: Store) -> TaskQueue:
    """``auto``: procrastinate on PostgreSQL, the tasks table on SQLite."""
    backend = settings.queue_backend
    if backend == "auto":
        backend = "table" if store.is_sqlite else "procrastinate"
    if backend == "table":
        return TableQueue(store)
    if store.is_sqlite:
        raise ValueError("LTXSERVE_QUEUE_BACKEND=procrastinate needs a PostgreSQL LTXSERVE_DATABASE_URL")
    from ltxserve.queue.postgres import ProcrastinateQueue

    return ProcrastinateQueue(settings, store.url)
