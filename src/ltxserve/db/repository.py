"""The store: the one owner of task and result state transitions.

Every transition is one method, stamped with a time; terminal states never change (each
update is guarded by ``status`` in its WHERE clause). Claims are atomic
``UPDATE ... WHERE status='queued' ... RETURNING`` so they work on SQLite and PostgreSQL alike.

Every transition *to* ``queued`` (submit, release, lease recovery) calls the ``enqueue`` hook in
the same transaction, so with a job-queue backend a queued task always has a job. The writes a
worker makes are retried for ``retry_s`` when the database connection drops (each is idempotent:
guarded by status, or keyed by the result row).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import joinedload

from ltxserve.db.models import (
    ApiKey,
    Base,
    Delivery,
    DeliveryStatus,
    Result,
    Task,
    TaskStatus,
    Upload,
    new_id,
    utcnow,
)
from ltxserve.logs import get_logger

log = get_logger(__name__)

KEY_PREFIX = "ltx_"
ACTIVE = (TaskStatus.QUEUED, TaskStatus.RUNNING)

#: Puts a task id on the job queue inside the caller's transaction (None: the table is the queue).
EnqueueHook = Callable[[AsyncSession, str], Awaitable[None]]

P = ParamSpec("P")
T = TypeVar("T")


def is_disconnect(exc: BaseException) -> bool:
    """A dropped or refused connection (worth another try), not a constraint or a bug."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


def retry_db(
    method: Callable[Concatenate[Store, P], Awaitable[T]],
) -> Callable[Concatenate[Store, P], Awaitable[T]]:
    """Retry an idempotent store write while the database connection is down (``retry_s``)."""

    @functools.wraps(method)
    async def wrapper(self: Store, *args: P.args, **kwargs: P.kwargs) -> T:
        deadline = time.monotonic() + self.retry_s
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


#: (id, status, created_at, request, progress) of a queued or running task.
ActiveTask = tuple[str, str, datetime, dict[str, Any], float]


class TaskConflict(Exception):
    """The API key already used this taskUUID."""


@dataclass(frozen=True)
class SubmitLimits:
    """Queued + running tasks one key may have, and queued tasks across all keys."""

    per_key: int
    queue: int


class LimitReached(Exception):
    """A submit would exceed ``SubmitLimits``; ``which`` is ``key`` or ``queue``."""

    def __init__(self, which: str, limit: int) -> None:
        super().__init__(f"{which} limit {limit} reached")
        self.which = which
        self.limit = limit


#: pg_advisory_xact_lock ids serializing submits (uploads) cluster-wide while they count and insert.
SUBMIT_LOCK_ID = 0x6C7478_0001
UPLOAD_LOCK_ID = 0x6C7478_0002


@dataclass(frozen=True)
class UploadQuota:
    """Uploads one key may make per minute, and bytes its unexpired uploads may hold."""

    per_minute: int
    bytes: int


class QuotaReached(Exception):
    """An upload over ``UploadQuota``; ``which`` is ``per_minute`` or ``bytes``."""

    def __init__(self, which: str, limit: int) -> None:
        super().__init__(f"upload {which} quota {limit} reached")
        self.which = which
        self.limit = limit


def new_webhook_secret() -> str:
    """Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def hash_key(key: str) -> str:
    """API keys are 256-bit random tokens, so a plain SHA-256 is a safe at-rest form."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewResult:
    seed: int
    cost: float | None


@dataclass(frozen=True)
class Requeued:
    requeued: list[str]
    failed: list[str]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Store:
    def __init__(
        self,
        url: str,
        *,
        enqueue: EnqueueHook | None = None,
        retry_s: float = 30.0,
        auth_cache_s: float = 0.0,
    ) -> None:
        self.url = url
        # Verified keys are trusted for ``auth_cache_s`` (every REST request authenticates);
        # revoking or rotating in this process forgets them at once, elsewhere within that time.
        self.auth_cache_s = auth_cache_s
        self._auth_cache: dict[str, tuple[float, ApiKey]] = {}
        self.is_sqlite = url.startswith("sqlite")
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
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.sessions() as s:
            await s.execute(select(1))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as s, s.begin():
            yield s

    # --- API keys ---------------------------------------------------------------------------

    async def create_key(self, name: str) -> tuple[ApiKey, str, str]:
        """Return the row, the key and its webhook secret; only hashes of the key are kept."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        secret = new_webhook_secret()
        row = ApiKey(name=name, key_hash=hash_key(key), prefix=key[:10], webhook_secret=secret)
        async with self.session() as s:
            s.add(row)
        return row, key, secret

    async def list_keys(self) -> list[ApiKey]:
        async with self.sessions() as s:
            return list((await s.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())

    async def revoke_key(self, ident: str) -> bool:
        """Revoke by id or by the prefix shown in ``keys list``."""
        self._auth_cache.clear()
        async with self.session() as s:
            res = await s.execute(
                update(ApiKey)
                .where((ApiKey.id == ident) | (ApiKey.prefix == ident), ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def authenticate(self, key: str) -> ApiKey | None:
        digest = hash_key(key)
        cached = self._auth_cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self.sessions() as s:
            row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
        if row is not None and self.auth_cache_s > 0:
            self._auth_cache[digest] = (time.monotonic() + self.auth_cache_s, row)
        return row

    async def active_key(self, key_id: str) -> ApiKey | None:
        """The key's current row while it is not revoked, through the same short cache as
        ``authenticate``: an open WebSocket re-checks its key with this before every message."""
        slot = f"id:{key_id}"
        cached = self._auth_cache.get(slot)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self.sessions() as s:
            row = await s.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
        if row is not None and self.auth_cache_s > 0:
            self._auth_cache[slot] = (time.monotonic() + self.auth_cache_s, row)
        return row

    async def rotate_webhook_secret(self, ident: str) -> str | None:
        """A new signing secret for the key (by id or prefix); the old one stops working."""
        self._auth_cache.clear()
        secret = new_webhook_secret()
        async with self.session() as s:
            res = await s.execute(
                update(ApiKey)
                .where((ApiKey.id == ident) | (ApiKey.prefix == ident), ApiKey.revoked_at.is_(None))
                .values(webhook_secret=secret)
            )
            return secret if res.rowcount else None  # type: ignore[attr-defined]

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self.sessions() as s:
            return await s.get(ApiKey, key_id)

    # --- tasks ------------------------------------------------------------------------------

    async def submit(
        self,
        api_key_id: str,
        task_uuid: str,
        task_type: str,
        request: dict[str, Any],
        results: list[NewResult],
        enqueue: Callable[[AsyncSession, str], Awaitable[None]] | None = None,
        limits: SubmitLimits | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> Task:
        """Persist a task and its result rows (and enqueue it) in one transaction.

        With ``limits`` the same transaction first takes a lock the database provides (SQLite:
        ``BEGIN IMMEDIATE``, the write lock; PostgreSQL: a transaction-scoped advisory lock),
        then counts, so concurrent submits cannot all see room for one more (``LimitReached``).

        Each result gets its videoUUID now, like its seed: every attempt writes the same object
        key, so a retried task overwrites rather than leaving a second copy, and a result is
        delivered under one URL whatever attempt made it.
        """
        task = Task(
            id=new_id(),
            api_key_id=api_key_id,
            task_uuid=task_uuid,
            task_type=task_type,
            request=request,
            results=[
                Result(index=i, seed=r.seed, cost=r.cost, video_uuid=new_id()) for i, r in enumerate(results)
            ],
            trace_context=trace_context,
        )
        hook = enqueue or self.enqueue
        try:
            async with self.session() as s:
                if limits is not None:
                    await self._check_limits(s, api_key_id, limits)
                s.add(task)
                await s.flush()
                if hook is not None:
                    await hook(s, task.id)
        except IntegrityError as exc:
            raise TaskConflict(task_uuid) from exc
        return task

    async def _lock(self, s: AsyncSession, lock_id: int) -> None:
        """A lock the database holds until this transaction ends; take it before counting."""
        if self.is_sqlite:
            await s.execute(text("BEGIN IMMEDIATE"))  # the first statement: the write lock
        else:
            await s.execute(select(func.pg_advisory_xact_lock(lock_id)))

    async def _check_limits(self, s: AsyncSession, api_key_id: str, limits: SubmitLimits) -> None:
        await self._lock(s, SUBMIT_LOCK_ID)
        active = await s.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.api_key_id == api_key_id, Task.status.in_(ACTIVE))
        )
        if int(active or 0) >= limits.per_key:
            raise LimitReached("key", limits.per_key)
        queued = await s.scalar(
            select(func.count()).select_from(Task).where(Task.status == TaskStatus.QUEUED)
        )
        if int(queued or 0) >= limits.queue:
            raise LimitReached("queue", limits.queue)

    async def find_task(self, api_key_id: str, task_uuid: str) -> Task | None:
        """One query, results joined in (getResponse polls this on every request)."""
        async with self.sessions() as s:
            res = await s.execute(
                select(Task)
                .options(joinedload(Task.results))
                .where(Task.api_key_id == api_key_id, Task.task_uuid == task_uuid)
            )
            return res.unique().scalar_one_or_none()

    @retry_db
    async def get_task(self, task_id: str) -> Task | None:
        async with self.sessions() as s:
            return await s.get(Task, task_id)

    async def next_queued(self) -> str | None:
        """The oldest queued task's id (the embedded table queue)."""
        async with self.sessions() as s:
            return await s.scalar(
                select(Task.id).where(Task.status == TaskStatus.QUEUED).order_by(Task.created_at).limit(1)
            )

    async def queued_requests(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The oldest queued tasks' ids and requests (a worker picks companions to batch with)."""
        async with self.sessions() as s:
            rows = await s.execute(
                select(Task.id, Task.request)
                .where(Task.status == TaskStatus.QUEUED)
                .order_by(Task.created_at)
                .limit(limit)
            )
            return [(task_id, request) for task_id, request in rows.all()]

    async def reenqueue(self, task_id: str) -> None:
        """A new queue job for a task that is still queued (its job was taken but not run)."""
        if self.enqueue is None:
            return
        async with self.session() as s:
            status = await s.scalar(select(Task.status).where(Task.id == task_id))
            if status == TaskStatus.QUEUED:
                await self.enqueue(s, task_id)

    async def count_active(self, api_key_id: str | None = None) -> int:
        query = select(func.count()).select_from(Task).where(Task.status.in_(ACTIVE))
        if api_key_id is not None:
            query = query.where(Task.api_key_id == api_key_id)
        async with self.sessions() as s:
            return int(await s.scalar(query) or 0)

    async def count_by_status(self) -> dict[str, int]:
        """Queued and running task counts (the metrics' queue gauges)."""
        async with self.sessions() as s:
            rows = await s.execute(
                select(Task.status, func.count()).where(Task.status.in_(ACTIVE)).group_by(Task.status)
            )
            counts = {status: int(n) for status, n in rows.all()}
        return {status: counts.get(status, 0) for status in ACTIVE}

    async def oldest_queued_at(self) -> datetime | None:
        """When the longest-waiting queued task was accepted (the queue-age gauge)."""
        async with self.sessions() as s:
            query = select(func.min(Task.created_at)).where(Task.status == TaskStatus.QUEUED)
            return await s.scalar(query)  # type: ignore[no-any-return]

    async def active_tasks(self, limit: int = 10_000) -> list[ActiveTask]:
        """(id, status, created_at, request, progress) of queued and running tasks (queue ETA)."""
        async with self.sessions() as s:
            rows = await s.execute(
                select(Task.id, Task.status, Task.created_at, Task.request, Task.progress)
                .where(Task.status.in_(ACTIVE))
                .order_by(Task.created_at)
                .limit(limit)
            )
            return [tuple(r) for r in rows.all()]  # type: ignore[misc]

    async def count_queued(self) -> int:
        async with self.sessions() as s:
            query = select(func.count()).select_from(Task).where(Task.status == TaskStatus.QUEUED)
            return int(await s.scalar(query) or 0)

    @retry_db
    async def claim(self, worker_id: str, lease_s: float, task_id: str | None = None) -> str | None:
        """Take the oldest queued task (or ``task_id``) under a lease; None when there is none."""
        now = utcnow()
        async with self.session() as s:
            if task_id is None:
                task_id = await s.scalar(
                    select(Task.id).where(Task.status == TaskStatus.QUEUED).order_by(Task.created_at).limit(1)
                )
                if task_id is None:
                    return None
            claimed = await s.scalar(
                update(Task)
                .where(Task.id == task_id, Task.status == TaskStatus.QUEUED)
                .values(
                    status=TaskStatus.RUNNING,
                    worker_id=worker_id,
                    attempts=Task.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    started_at=func.coalesce(Task.started_at, now),
                )
                .returning(Task.id)
            )
            if claimed is None:
                # Already ours: a retried claim whose first commit went through (lost reply).
                claimed = await s.scalar(
                    select(Task.id).where(
                        Task.id == task_id, Task.status == TaskStatus.RUNNING, Task.worker_id == worker_id
                    )
                )
        return claimed

    async def heartbeat(self, task_id: str, worker_id: str, lease_s: float) -> bool:
        """Extend the lease; False when the task is no longer this worker's (or cancelled)."""
        async with self.session() as s:
            res = await s.execute(
                update(Task)
                .where(Task.id == task_id, Task.worker_id == worker_id, Task.status == TaskStatus.RUNNING)
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
                .returning(Task.cancel_requested)
            )
            row = res.first()
        return row is not None and not row[0]

    @retry_db
    async def release(self, task_id: str, worker_id: str, refund_attempt: bool = False) -> bool:
        """Give a running task back to the queue: its attempt failed (attempts stay counted), or
        its worker was preempted (``refund_attempt``: a preemption is not the task's fault)."""
        values: dict[str, Any] = {"status": TaskStatus.QUEUED, "worker_id": None, "lease_expires_at": None}
        if refund_attempt:
            values["attempts"] = Task.attempts - 1
        async with self.session() as s:
            res = await s.execute(
                update(Task)
                .where(Task.id == task_id, Task.worker_id == worker_id, Task.status == TaskStatus.RUNNING)
                .values(**values)
            )
            released = bool(res.rowcount)  # type: ignore[attr-defined]
            if released and self.enqueue is not None:
                await self.enqueue(s, task_id)
            return released

    async def set_progress(self, task_id: str, progress: float) -> None:
        async with self.session() as s:
            await s.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == TaskStatus.RUNNING)
                .values(progress=progress)
            )

    @retry_db
    async def finish_result(
        self,
        result_id: str,
        *,
        video_uuid: str,
        storage_key: str,
        nsfw: bool | None,
        expires_at: datetime,
    ) -> bool:
        """Mark a result stored; True also when this very file was already recorded (a retried
        write whose first commit went through), False when the result ended otherwise."""
        async with self.session() as s:
            res = await s.execute(
                update(Result)
                .where(Result.id == result_id, Result.status.not_in(TaskStatus.TERMINAL))
                .values(
                    status=TaskStatus.SUCCESS,
                    video_uuid=video_uuid,
                    storage_key=storage_key,
                    nsfw=nsfw,
                    finished_at=utcnow(),
                    expires_at=expires_at,
                )
            )
            if res.rowcount:  # type: ignore[attr-defined]
                return True
            row = await s.get(Result, result_id)
            return row is not None and row.status == TaskStatus.SUCCESS and row.storage_key == storage_key

    @retry_db
    async def fail_result(
        self, result_id: str, code: str, message: str, status: str = TaskStatus.ERROR
    ) -> None:
        async with self.session() as s:
            await s.execute(
                update(Result)
                .where(Result.id == result_id, Result.status.not_in(TaskStatus.TERMINAL))
                .values(status=status, error_code=code, error_message=message, finished_at=utcnow())
            )

    @retry_db
    async def finish_task(
        self,
        task_id: str,
        *,
        code: str | None = None,
        message: str | None = None,
        status: str | None = None,
    ) -> Task | None:
        """End a task: open results end with ``code`` (or an error); the task takes their verdict."""
        now = utcnow()
        async with self.session() as s:
            task = await s.get(Task, task_id, with_for_update=not self.is_sqlite)
            if task is None or task.status in TaskStatus.TERMINAL:
                return task
            for r in task.results:
                if r.status not in TaskStatus.TERMINAL:
                    r.status = status or TaskStatus.ERROR
                    r.error_code = code or "inferenceError"
                    r.error_message = message or "the task ended before this result was made"
                    r.finished_at = now
            statuses = {r.status for r in task.results}
            if status is not None:
                task.status = status
            else:
                task.status = TaskStatus.SUCCESS if TaskStatus.SUCCESS in statuses else TaskStatus.ERROR
            task.error_code, task.error_message = code, message
            task.finished_at = now
            task.lease_expires_at = None
            task.progress = 100.0 if task.status == TaskStatus.SUCCESS else task.progress
        return task

    async def request_cancel(self, task_id: str) -> Task | None:
        """Queued tasks end at once; running ones are flagged for their worker to stop."""
        async with self.session() as s:
            await s.execute(
                update(Task).where(Task.id == task_id, Task.status.in_(ACTIVE)).values(cancel_requested=True)
            )
            status = await s.scalar(select(Task.status).where(Task.id == task_id))
        if status == TaskStatus.QUEUED:
            return await self.finish_task(
                task_id, code="taskCancelled", message="cancelled by the client", status=TaskStatus.CANCELLED
            )
        return await self.get_task(task_id)

    async def recover(
        self,
        max_attempts: int,
        now: datetime | None = None,
        all_running: bool = False,
        task_ids: Collection[str] | None = None,
        enqueue: bool = True,
    ) -> Requeued:
        """Running tasks whose lease ran out go back to the queue, or end after ``max_attempts``.

        ``task_ids`` limits it to those tasks (a worker handed a task whose previous worker died);
        ``enqueue=False`` requeues without a new queue job (that worker claims it at once).
        """
        now = now or utcnow()
        query = select(Task.id, Task.attempts).where(Task.status == TaskStatus.RUNNING)
        if not all_running:
            query = query.where(Task.lease_expires_at < now)
        if task_ids is not None:
            query = query.where(Task.id.in_(list(task_ids)))
        async with self.sessions() as s:
            stale = (await s.execute(query)).all()
        requeued, failed = [], []
        for task_id, attempts in stale:
            if attempts >= max_attempts:
                await self.finish_task(
                    task_id,
                    code="inferenceError",
                    message=f"the task stopped its worker {attempts} times and was given up",
                )
                failed.append(task_id)
                continue
            async with self.session() as s:
                res = await s.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.status == TaskStatus.RUNNING, Task.attempts == attempts)
                    .values(status=TaskStatus.QUEUED, worker_id=None, lease_expires_at=None)
                )
                if res.rowcount:  # type: ignore[attr-defined]
                    requeued.append(task_id)
                    if enqueue and self.enqueue is not None:
                        await self.enqueue(s, task_id)
        return Requeued(requeued, failed)

    # --- outputs ----------------------------------------------------------------------------

    async def expired_results(self, now: datetime | None = None, limit: int = 500) -> list[Result]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(Result)
                .where(Result.expires_at < (now or utcnow()), Result.deleted_at.is_(None))
                .limit(limit)
            )
            return list(rows.all())

    async def mark_deleted(self, result_id: str) -> None:
        async with self.session() as s:
            await s.execute(update(Result).where(Result.id == result_id).values(deleted_at=utcnow()))

    async def find_video(self, video_uuid: str) -> Result | None:
        async with self.sessions() as s:
            return await s.scalar(
                select(Result).where(
                    Result.video_uuid == video_uuid,
                    Result.status == TaskStatus.SUCCESS,
                    Result.deleted_at.is_(None),
                )
            )

    # --- uploads ----------------------------------------------------------------------------

    async def add_upload(
        self,
        api_key_id: str,
        image_uuid: str,
        storage_key: str,
        expires_at: datetime,
        size_bytes: int = 0,
        quota: UploadQuota | None = None,
    ) -> Upload:
        """Record an upload; with ``quota`` counted and inserted under the same database lock as
        ``submit`` (``QuotaReached`` when the key is over its uploads per minute or stored bytes)."""
        row = Upload(
            image_uuid=image_uuid,
            api_key_id=api_key_id,
            storage_key=storage_key,
            expires_at=expires_at,
            size_bytes=size_bytes,
        )
        async with self.session() as s:
            if quota is not None:
                await self._lock(s, UPLOAD_LOCK_ID)
                now = utcnow()
                recent = await s.scalar(
                    select(func.count())
                    .select_from(Upload)
                    .where(Upload.api_key_id == api_key_id, Upload.created_at > now - timedelta(minutes=1))
                )
                if int(recent or 0) >= quota.per_minute:
                    raise QuotaReached("per_minute", quota.per_minute)
                stored = await s.scalar(
                    select(func.coalesce(func.sum(Upload.size_bytes), 0)).where(
                        Upload.api_key_id == api_key_id,
                        (Upload.expires_at.is_(None)) | (Upload.expires_at > now),
                    )
                )
                if int(stored or 0) + size_bytes > quota.bytes:
                    raise QuotaReached("bytes", quota.bytes)
            s.add(row)
        return row

    async def get_upload(self, api_key_id: str, image_uuid: str) -> Upload | None:
        async with self.sessions() as s:
            row = await s.get(Upload, image_uuid)
        if row is None or row.api_key_id != api_key_id:
            return None
        if row.expires_at is not None and row.expires_at < utcnow():
            return None
        return row

    async def expired_uploads(self, now: datetime | None = None, limit: int = 500) -> list[Upload]:
        async with self.sessions() as s:
            rows = await s.scalars(select(Upload).where(Upload.expires_at < (now or utcnow())).limit(limit))
            return list(rows.all())

    async def delete_upload(self, image_uuid: str) -> None:
        async with self.session() as s:
            row = await s.get(Upload, image_uuid)
            if row is not None:
                await s.delete(row)

    # --- deliveries (webhooks, uploadEndpoint) ----------------------------------------------

    async def add_delivery(self, delivery: Delivery) -> bool:
        """Record a delivery once per (result, kind); False when it already existed."""
        try:
            async with self.session() as s:
                s.add(delivery)
        except IntegrityError:
            return False
        return True

    async def claim_deliveries(self, lease_s: float, limit: int = 20) -> list[Delivery]:
        """Due deliveries, each pushed ``lease_s`` into the future so no other process sends it."""
        now = utcnow()
        async with self.sessions() as s:
            ids = list(
                (
                    await s.scalars(
                        select(Delivery.id)
                        .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
                        .order_by(Delivery.next_attempt_at)
                        .limit(limit)
                    )
                ).all()
            )
        claimed: list[Delivery] = []
        for delivery_id in ids:
            async with self.session() as s:
                row = await s.scalar(
                    update(Delivery)
                    .where(
                        Delivery.id == delivery_id,
                        Delivery.status == DeliveryStatus.PENDING,
                        Delivery.next_attempt_at <= now,
                    )
                    .values(next_attempt_at=now + timedelta(seconds=lease_s), attempts=Delivery.attempts + 1)
                    .returning(Delivery)
                )
                if row is not None:
                    claimed.append(row)
        return claimed

    async def delivery_done(self, delivery_id: str) -> None:
        async with self.session() as s:
            await s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status=DeliveryStatus.DELIVERED, finished_at=utcnow(), last_error=None)
            )

    async def delivery_retry(self, delivery_id: str, at: datetime, error: str) -> None:
        async with self.session() as s:
            await s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(next_attempt_at=at, last_error=error)
            )

    async def delivery_failed(self, delivery_id: str, error: str) -> None:
        async with self.session() as s:
            await s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status=DeliveryStatus.FAILED, finished_at=utcnow(), last_error=error)
            )

    async def deliveries_for(self, task_id: str) -> list[Delivery]:
        async with self.sessions() as s:
            rows = await s.scalars(select(Delivery).where(Delivery.task_id == task_id))
            return list(rows.all())
