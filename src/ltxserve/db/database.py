"""The database handle the repositories share: engine, sessions, and retries of dropped connections.

The schema runs unchanged on SQLite (embedded) and PostgreSQL (scale-out). A worker's writes are
retried for ``retry_s`` when the connection drops (``retry_db``): each is idempotent, guarded by
status or keyed by its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ltxserve.config import Settings
from ltxserve.db.models import Base
from ltxserve.logs import get_logger

log = get_logger(__name__)


def private_data_dir(settings: Settings) -> None:
    """Files this process creates are its owner's only (umask 077: the SQLite file holds webhook
    secrets, uploads are other clients' images), and so is ``data_dir``, also when it exists."""
    os.umask(0o077)
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # not ours (a mounted volume): leave it as it is
        data.chmod(0o700)
        for db_file in data.glob("ltxserve.db*"):
            db_file.chmod(0o600)


def database_url(settings: Settings) -> str:
    """SQLAlchemy's URL: ``settings.database_url`` on the psycopg driver, else the SQLite file in
    the (private) data directory. Here, not in ``runtime``: the keys commands need the database
    alone, and ``runtime`` loads the engine (torch and diffusers: ~7 s of imports)."""
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url.removeprefix(prefix)
        return url
    private_data_dir(settings)
    return f"sqlite+aiosqlite:///{settings.data_dir.resolve() / 'ltxserve.db'}"


#: Puts a task id on the job queue inside the caller's transaction (None: the table is the queue).
EnqueueHook = Callable[[AsyncSession, str], Awaitable[None]]

P = ParamSpec("P")
T = TypeVar("T")


def is_disconnect(exc: BaseException) -> bool:
    """A dropped or refused connection (worth another try), not a constraint or a bug."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


class _Repository(Protocol):
    db: Database


R = TypeVar("R", bound=_Repository)


def retry_db(
    method: Callable[Concatenate[R, P], Awaitable[T]],
) -> Callable[Concatenate[R, P], Awaitable[T]]:
    """Retry an idempotent write while the database connection is down (``Database.retry_s``)."""

    @functools.wraps(method)
    async def wrapper(self: R, *args: P.args, **kwargs: P.kwargs) -> T:
        deadline = time.monotonic() + self.db.retry_s
        delay = 0.1
        while True:
            try:
                return await method(self, *args, **kwargs)
            except Exception as exc:
                if not is_disconnect(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable, retrying", op=method.__name__, error=str(exc)[:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    return wrapper


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Database:
    """One SQLAlchemy engine and its sessions; ``enqueue`` joins the job queue to task writes."""

    def __init__(self, url: str, *, enqueue: EnqueueHook | None = None, retry_s: float = 30.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        #: Called in the same transaction as every transition to ``queued`` (job-queue backends).
        self.enqueue = enqueue
        self.retry_s = retry_s
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            # pre_ping: a pooled connection the server dropped (restart, pg_terminate_backend) is
            # replaced at checkout instead of failing the next query.
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_all(self) -> None:
        """Tables straight from the models (tests); processes use ``migrate`` instead."""
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def migrate(self, auto: bool = True) -> None:
        """Upgrade the schema to head (``auto``), or check that it is there."""
        from ltxserve.db import migrate

        if auto:
            await migrate.upgrade(self.engine)
        else:
            await migrate.check(self.engine)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def ping(self) -> None:
        """One round trip (readiness)."""
        async with self.sessions() as s:
            await s.execute(select(1))

    async def lock(self, s: AsyncSession, lock_id: int) -> None:
        """A lock the database holds until ``s``'s transaction ends; take it before counting
        (SQLite: ``BEGIN IMMEDIATE``, the write lock; PostgreSQL: an advisory xact lock)."""
        if self.is_sqlite:
            await s.execute(text("BEGIN IMMEDIATE"))  # the first statement: the write lock
        else:
            await s.execute(select(func.pg_advisory_xact_lock(lock_id)))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on leaving the block."""
        async with self.sessions() as s, s.begin():
            yield s
