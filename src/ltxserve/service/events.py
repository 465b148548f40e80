"""Task events (progress, finished results) fanned out to the WebSocket connections that wait.

The embedded backend is an in-process pub/sub; the scale-out backend carries the same events
over PostgreSQL LISTEN/NOTIFY so a worker on another machine reaches a client on any API node.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ltxserve.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class TaskEvent:
    """``kind`` is ``progress`` or ``result``; ``task_id`` is the store's internal id."""

    task_id: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[TaskEvent], Awaitable[None]]


class EventBus(Protocol):
    async def publish(self, event: TaskEvent) -> None: ...

    def subscribe(self, task_id: str, listener: Listener) -> Callable[[], None]:
        """Register ``listener`` for one task; returns the unsubscribe function."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalEventBus:
    """In-process fan-out: publishers and WebSocket handlers share one event loop."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._running: set[asyncio.Task[None]] = set()

    async def publish(self, event: TaskEvent) -> None:
        await self.dispatch(event)

    async def dispatch(self, event: TaskEvent) -> None:
        """Hand the event to each listener without waiting for it: a publisher (the worker, or a
        request handler cancelling a task) must never wait on a slow or busy socket."""
        for listener in list(self._listeners.get(event.task_id, ())):
            task = asyncio.create_task(self._deliver(listener, event))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    @staticmethod
    async def _deliver(listener: Listener, event: TaskEvent) -> None:
        try:
            await listener(event)
        except Exception:  # one broken socket must not stop the others
            log.exception("event listener failed", task_id=event.task_id, kind=event.kind)

    def subscribe(self, task_id: str, listener: Listener) -> Callable[[], None]:
        self._listeners[task_id].add(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(task_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    self._listeners.pop(task_id, None)

        return unsubscribe

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._listeners.clear()


def loop_safe(loop: asyncio.AbstractEventLoop, bus: EventBus, event: TaskEvent) -> None:
    """Publish from a worker thread (the engine's progress callback runs off the loop)."""
    asyncio.run_coroutine_threadsafe(bus.publish(event), loop)
