"""Task events (progress, finished results) fanned out to the WebSocket connections that wait.

The embedded backend is an in-process pub/sub; the scale-out backend carries the same events
over PostgreSQL LISTEN/NOTIFY so a worker on another machine reaches a client on any API node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from ltxserve.logs import get_logger

log = get_logger(__name__)


#: A running task was cancelled: its worker stops at the next denoising step.
CANCEL_EVENT = "cancel"


@dataclass(frozen=True)
class TaskEvent:
    """``kind`` is ``progress``, ``result`` or ``cancel``; ``task_id`` is the store's internal id."""

    task_id: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[TaskEvent], Awaitable[None]]


class EventBus(Protocol):
    async def publish(self, event: TaskEvent) -> None:
        """Send an event to every listener of its task, in every process."""

    def subscribe(self, task_id: str, listener: Listener) -> Callable[[], None]:
        """Register ``listener`` for one task; returns the unsubscribe function."""
        ...

    async def start(self) -> None:
        """Connect (PostgreSQL: start listening)."""

    async def stop(self) -> None:
        """Disconnect; listeners get nothing more."""


class LocalEventBus:
    """In-process fan-out: publishers and WebSocket handlers share one event loop."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._running: set[asyncio.Task[None]] = set()

    async def publish(self, event: TaskEvent) -> None:
        """Deliver in this process (embedded mode has only one)."""
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
        """Listen for a task's events; returns the function that stops listening."""
        self._listeners[task_id].add(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(task_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    self._listeners.pop(task_id, None)

        return unsubscribe

    async def start(self) -> None:
        """Nothing to connect."""
        return None

    async def stop(self) -> None:
        """Nothing to disconnect."""
        self._listeners.clear()


CHANNEL = "ltxserve_events"
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; larger events travel as a reference.
MAX_PAYLOAD = 7500

#: Rebuilds a finished task's ``result`` payload from the store (for events too big to NOTIFY).
Reloader = Callable[[str], Awaitable[dict[str, Any] | None]]


class PostgresEventBus(LocalEventBus):
    """Events over PostgreSQL LISTEN/NOTIFY, so a worker reaches a WebSocket on any API node.

    Every process publishes with ``pg_notify`` and listens on one channel with a dedicated
    autocommit connection; each node hands an event only to its own subscribers. The listener
    reconnects after a dropped connection (restart, failover, ``pg_terminate_backend``);
    progress pushed while it was away is lost (best effort), finished results are never only
    here: getResponse reads them from the store.

    ``result`` events travel as a reference and the receiving node rebuilds the items from the
    store (``reloader``): they then carry that node's file URLs, exactly like its getResponse,
    whatever the publishing worker's settings; any other event too large for NOTIFY does the same.
    """

    def __init__(self, conninfo: str, reloader: Reloader | None = None) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.reloader = reloader
        self._listener: asyncio.Task[None] | None = None
        self._publisher: Any = None  # psycopg.AsyncConnection, opened lazily
        self._publish_lock = asyncio.Lock()
        self.listening = asyncio.Event()

    async def start(self) -> None:
        """Start the LISTEN loop on its own connection."""
        self._listener = asyncio.create_task(self._listen(), name="event-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), timeout=10)

    async def stop(self) -> None:
        """Stop the LISTEN loop and close its connection."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.close()
        await super().stop()

    async def publish(self, event: TaskEvent) -> None:
        """NOTIFY every process; result events (and any too large) go as a reference the receivers
        rebuild from the store."""
        body = json.dumps({"t": event.task_id, "k": event.kind, "p": event.payload}, separators=(",", ":"))
        if event.kind == "result" or len(body.encode()) > MAX_PAYLOAD:
            body = json.dumps({"t": event.task_id, "k": event.kind, "ref": True})
        async with self._publish_lock:
            for attempt in (1, 2):  # a dropped connection gets one fresh one
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = await psycopg.AsyncConnection.connect(
                            self.conninfo, autocommit=True
                        )
                    await self._publisher.execute("SELECT pg_notify(%s, %s)", (CHANNEL, body))
                    return
                except psycopg.OperationalError:
                    with contextlib.suppress(Exception):
                        await self._publisher.close()
                    self._publisher = None
                    if attempt == 2:
                        raise

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.2
                    while True:
                        async for note in conn.notifies(timeout=15.0):
                            await self._received(note.payload)
                        await conn.execute("SELECT 1")  # a silently dead connection shows here
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("event listener lost the database; reconnecting", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _received(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            task_id, kind = data["t"], data["k"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed event", payload=payload[:200])
            return
        if task_id not in self._listeners:
            return  # nobody on this node waits for that task
        body = data.get("p") or {}
        if data.get("ref"):
            if self.reloader is None:
                return
            try:
                body = await self.reloader(task_id) or {}
            except Exception:
                log.exception("could not rebuild a large event", task_id=task_id)
                return
        await self.dispatch(TaskEvent(task_id, kind, body))
