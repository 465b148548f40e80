"""Tasks and their results: every transition of ``ltxserve.db.lifecycle``, one transaction each.

Each transition is one method, stamped with a time and guarded in SQL by the states the
lifecycle table allows it from, so terminal states never change and two processes racing for a
task move it once. Claims are atomic ``UPDATE ... WHERE status='queued' ... RETURNING`` so they
work on SQLite and PostgreSQL alike. Every transition *to* ``queued`` (submit, release, lease
recovery) calls the database's ``enqueue`` hook in the same transaction, so with a job-queue
backend a queued task always has a job.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from ltxserve.db.database import Database, EnqueueHook, retry_db
from ltxserve.db.lifecycle import (
    ACTIVE,
    RESULT_TRANSITIONS,
    TERMINAL,
    TaskStatus,
    check,
    sources,
)
from ltxserve.db.models import Result, Task, new_id, utcnow

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


#: pg_advisory_xact_lock id serializing submits cluster-wide while they count and insert.
SUBMIT_LOCK_ID = 0x6C7478_0001


@dataclass(frozen=True)
class NewResult:
    """One requested result at submission: its seed (fixed now) and its cost."""

    seed: int
    cost: float | None


@dataclass(frozen=True)
class Requeued:
    """What ``recover`` did: task ids back in the queue, and task ids that ran out of attempts."""

    requeued: list[str]
    failed: list[str]


class TaskRepository:
    """The ``tasks`` and ``results`` tables (a task and its results are one aggregate)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads ------------------------------------------------------------------------------

    async def find(self, api_key_id: str, task_uuid: str) -> Task | None:
        """A key's task by its taskUUID; one query, results joined in (getResponse polls this)."""
        async with self.db.sessions() as s:
            res = await s.execute(
                select(Task)
                .options(joinedload(Task.results))
                .where(Task.api_key_id == api_key_id, Task.task_uuid == task_uuid)
            )
            return res.unique().scalar_one_or_none()

    @retry_db
    async def get(self, task_id: str) -> Task | None:
        """A task (with its results) by its row id."""
        async with self.db.sessions() as s:
            return await s.get(Task, task_id)

    async def next_queued(self) -> str | None:
        """The oldest queued task's id (the embedded table queue)."""
        async with self.db.sessions() as s:
            return await s.scalar(
                select(Task.id).where(Task.status == TaskStatus.QUEUED).order_by(Task.created_at).limit(1)
            )

    async def queued_requests(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The oldest queued tasks' ids and requests (a worker picks companions to batch with)."""
        async with self.db.sessions() as s:
            rows = await s.execute(
                select(Task.id, Task.request)
                .where(Task.status == TaskStatus.QUEUED)
                .order_by(Task.created_at)
                .limit(limit)
            )
            return [(task_id, request) for task_id, request in rows.all()]

    async def active_tasks(self, limit: int = 10_000) -> list[ActiveTask]:
        """(id, status, created_at, request, progress) of queued and running tasks (queue ETA)."""
        async with self.db.sessions() as s:
            rows = await s.execute(
                select(Task.id, Task.status, Task.created_at, Task.request, Task.progress)
                .where(Task.status.in_(ACTIVE))
                .order_by(Task.created_at)
                .limit(limit)
            )
            return [tuple(r) for r in rows.all()]  # type: ignore[misc]

    async def count_active(self, api_key_id: str | None = None) -> int:
        """Queued plus running tasks, of one key or of everyone."""
        query = select(func.count()).select_from(Task).where(Task.status.in_(ACTIVE))
        if api_key_id is not None:
            query = query.where(Task.api_key_id == api_key_id)
        async with self.db.sessions() as s:
            return int(await s.scalar(query) or 0)

    async def count_by_status(self) -> dict[str, int]:
        """Queued and running task counts (the metrics' queue gauges)."""
        async with self.db.sessions() as s:
            rows = await s.execute(
                select(Task.status, func.count()).where(Task.status.in_(ACTIVE)).group_by(Task.status)
            )
            counts = {status: int(n) for status, n in rows.all()}
        return {status.value: counts.get(status, 0) for status in ACTIVE}

    async def oldest_queued_at(self) -> datetime | None:
        """When the longest-waiting queued task was accepted (the queue-age gauge)."""
        async with self.db.sessions() as s:
            query = select(func.min(Task.created_at)).where(Task.status == TaskStatus.QUEUED)
            return await s.scalar(query)  # type: ignore[no-any-return]

    async def count_queued(self) -> int:
        """Queued tasks of everyone (the queue length limit)."""
        async with self.db.sessions() as s:
            query = select(func.count()).select_from(Task).where(Task.status == TaskStatus.QUEUED)
            return int(await s.scalar(query) or 0)

    # --- transitions ------------------------------------------------------------------------

    async def submit(
        self,
        api_key_id: str,
        task_uuid: str,
        task_type: str,
        request: dict[str, Any],
        results: list[NewResult],
        enqueue: EnqueueHook | None = None,
        limits: SubmitLimits | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> Task:
        """-> queued: persist a task and its result rows (and enqueue it) in one transaction.

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
            status=TaskStatus.QUEUED,
            results=[
                Result(index=i, seed=r.seed, cost=r.cost, video_uuid=new_id()) for i, r in enumerate(results)
            ],
            trace_context=trace_context,
        )
        hook = enqueue or self.db.enqueue
        try:
            async with self.db.session() as s:
                if limits is not None:
                    await self._check_limits(s, api_key_id, limits)
                s.add(task)
                await s.flush()
                if hook is not None:
                    await hook(s, task.id)
        except IntegrityError as exc:
            raise TaskConflict(task_uuid) from exc
        return task

    async def _check_limits(self, s: AsyncSession, api_key_id: str, limits: SubmitLimits) -> None:
        await self.db.lock(s, SUBMIT_LOCK_ID)
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

    async def reenqueue(self, task_id: str) -> None:
        """A new queue job for a task that is still queued (its job was taken but not run)."""
        if self.db.enqueue is None:
            return
        async with self.db.session() as s:
            status = await s.scalar(select(Task.status).where(Task.id == task_id))
            if status == TaskStatus.QUEUED:
                await self.db.enqueue(s, task_id)

    @retry_db
    async def claim(self, worker_id: str, lease_s: float, task_id: str | None = None) -> str | None:
        """queued -> running: take the oldest queued task (or ``task_id``) under a lease; None
        when there is none."""
        now = utcnow()
        async with self.db.session() as s:
            if task_id is None:
                task_id = await s.scalar(
                    select(Task.id).where(Task.status == TaskStatus.QUEUED).order_by(Task.created_at).limit(1)
                )
                if task_id is None:
                    return None
            claimed = await s.scalar(
                update(Task)
                .where(Task.id == task_id, Task.status.in_(sources(TaskStatus.RUNNING)))
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
        async with self.db.session() as s:
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
        """running -> queued: give the task back; its attempt failed (attempts stay counted), or
        its worker was preempted (``refund_attempt``: a preemption is not the task's fault)."""
        values: dict[str, Any] = {"status": TaskStatus.QUEUED, "worker_id": None, "lease_expires_at": None}
        if refund_attempt:
            values["attempts"] = Task.attempts - 1
        async with self.db.session() as s:
            res = await s.execute(
                update(Task)
                .where(
                    Task.id == task_id,
                    Task.worker_id == worker_id,
                    Task.status.in_(sources(TaskStatus.QUEUED)),
                )
                .values(**values)
            )
            released = bool(res.rowcount)  # type: ignore[attr-defined]
            if released and self.db.enqueue is not None:
                await self.db.enqueue(s, task_id)
            return released

    async def set_progress(self, task_id: str, progress: float) -> None:
        """Record a running task's progress (percent); not a transition."""
        async with self.db.session() as s:
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
        """result queued -> success: its file is stored. True also when this very file was already
        recorded (a retried write whose first commit went through), False when the result ended
        otherwise."""
        async with self.db.session() as s:
            res = await s.execute(
                update(Result)
                .where(
                    Result.id == result_id, Result.status.in_(sources(TaskStatus.SUCCESS, RESULT_TRANSITIONS))
                )
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
        self, result_id: str, code: str, message: str, status: TaskStatus = TaskStatus.ERROR
    ) -> None:
        """result queued -> error (or cancelled); an ended result stays as it is."""
        check(TaskStatus.QUEUED, status, RESULT_TRANSITIONS)
        async with self.db.session() as s:
            await s.execute(
                update(Result)
                .where(Result.id == result_id, Result.status.in_(sources(status, RESULT_TRANSITIONS)))
                .values(status=status, error_code=code, error_message=message, finished_at=utcnow())
            )

    @retry_db
    async def finish_task(
        self,
        task_id: str,
        *,
        code: str | None = None,
        message: str | None = None,
        status: TaskStatus | None = None,
    ) -> Task | None:
        """End a task: open results end with ``code`` (or an error); the task takes their verdict
        (``status`` None) or ``status``. A task that already ended is returned unchanged (the
        first end wins, and a retried write finds its own); any other transition the lifecycle
        table does not allow raises ``IllegalTransition``."""
        now = utcnow()
        async with self.db.session() as s:
            task = await s.get(Task, task_id, with_for_update=not self.db.is_sqlite)
            if task is None or task.status in TERMINAL:
                return task
            result_status = status or TaskStatus.ERROR
            check(TaskStatus.QUEUED, result_status, RESULT_TRANSITIONS)
            for r in task.results:
                if r.status not in TERMINAL:
                    r.status = result_status
                    r.error_code = code or "inferenceError"
                    r.error_message = message or "the task ended before this result was made"
                    r.finished_at = now
            statuses = {r.status for r in task.results}
            if status is None:
                status = TaskStatus.SUCCESS if TaskStatus.SUCCESS in statuses else TaskStatus.ERROR
            check(task.status, status)  # raises: the session rolls back, nothing changes
            task.status = status
            task.error_code, task.error_message = code, message
            task.finished_at = now
            task.lease_expires_at = None
            task.progress = 100.0 if task.status == TaskStatus.SUCCESS else task.progress
        return task

    async def request_cancel(self, task_id: str) -> Task | None:
        """Queued tasks end at once (-> cancelled); running ones are flagged for their worker."""
        async with self.db.session() as s:
            await s.execute(
                update(Task).where(Task.id == task_id, Task.status.in_(ACTIVE)).values(cancel_requested=True)
            )
            status = await s.scalar(select(Task.status).where(Task.id == task_id))
        if status == TaskStatus.QUEUED:
            return await self.finish_task(
                task_id, code="taskCancelled", message="cancelled by the client", status=TaskStatus.CANCELLED
            )
        return await self.get(task_id)

    async def recover(
        self,
        max_attempts: int,
        now: datetime | None = None,
        all_running: bool = False,
        task_ids: Collection[str] | None = None,
        enqueue: bool = True,
    ) -> Requeued:
        """running -> queued for tasks whose lease ran out, or -> error after ``max_attempts``.

        ``task_ids`` limits it to those tasks (a worker handed a task whose previous worker died);
        ``enqueue=False`` requeues without a new queue job (that worker claims it at once).
        """
        now = now or utcnow()
        query = select(Task.id, Task.attempts).where(Task.status == TaskStatus.RUNNING)
        if not all_running:
            query = query.where(Task.lease_expires_at < now)
        if task_ids is not None:
            query = query.where(Task.id.in_(list(task_ids)))
        async with self.db.sessions() as s:
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
            async with self.db.session() as s:
                res = await s.execute(
                    update(Task)
                    .where(
                        Task.id == task_id,
                        Task.status.in_(sources(TaskStatus.QUEUED)),
                        Task.attempts == attempts,
                    )
                    .values(status=TaskStatus.QUEUED, worker_id=None, lease_expires_at=None)
                )
                if res.rowcount:  # type: ignore[attr-defined]
                    requeued.append(task_id)
                    if enqueue and self.db.enqueue is not None:
                        await self.db.enqueue(s, task_id)
        return Requeued(requeued, failed)

    # --- outputs ----------------------------------------------------------------------------

    async def expired_results(self, now: datetime | None = None, limit: int = 500) -> list[Result]:
        """Results past their ``ttl`` whose files are not deleted yet."""
        async with self.db.sessions() as s:
            rows = await s.scalars(
                select(Result)
                .where(Result.expires_at < (now or utcnow()), Result.deleted_at.is_(None))
                .limit(limit)
            )
            return list(rows.all())

    async def mark_deleted(self, result_id: str) -> None:
        """The result's file is gone (its URL answers 404 from now on)."""
        async with self.db.session() as s:
            await s.execute(update(Result).where(Result.id == result_id).values(deleted_at=utcnow()))

    async def find_video(self, video_uuid: str) -> Result | None:
        """A stored, undeleted result by its videoUUID."""
        async with self.db.sessions() as s:
            return await s.scalar(
                select(Result).where(
                    Result.video_uuid == video_uuid,
                    Result.status == TaskStatus.SUCCESS,
                    Result.deleted_at.is_(None),
                )
            )
