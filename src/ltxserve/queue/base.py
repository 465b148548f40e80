"""The narrow interface between the store and whatever hands task ids to workers.

The tasks table is the state (status, attempts, leases, results) in every mode; a ``TaskQueue``
only delivers task ids and wakes workers up. Two backends:

* ``TableQueue`` (embedded, SQLite): the tasks table itself, polled in-process and woken
  directly by ``submit``.
* ``ProcrastinateQueue`` (scale-out, PostgreSQL): a procrastinate job per queued task, deferred
  in the same transaction as the task row; LISTEN/NOTIFY wake-up, worker heartbeats, and
  re-delivery of the jobs of workers that stopped heartbeating.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

#: Runs one delivered task id to its end (the worker's claim -> generate -> store).
Handler = Callable[[str], Awaitable[None]]


class TaskQueue(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def enqueue(self, session: AsyncSession, task_id: str) -> None:
        """Put ``task_id`` on the queue inside the caller's (uncommitted) transaction."""
        ...

    async def consume(self, handle: Handler, stopping: asyncio.Event) -> None:
        """Hand task ids to ``handle`` one at a time until ``stopping`` is set; the task in hand
        is finished first (drain)."""
        ...

    def wake(self) -> None:
        """A task was queued by this process: look now rather than at the next poll."""
        ...

    async def recover(self) -> int:
        """Re-deliver what dead workers held; returns how many jobs came back."""
        ...


def libpq_url(url: str) -> str:
    """psycopg wants ``postgresql://``; SQLAlchemy URLs name the driver (``+psycopg``)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"
