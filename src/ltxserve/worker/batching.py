"""Batching across requests: queued tasks of one shape denoise together in one pipeline call.

After claiming a task the worker looks at the queue for tasks with the same batch key (the
model, and ``engine.together.batch_key``: size, length, fps, steps, guidance, audio) and claims
them too, up to ``batch_tasks`` in all, waiting at most ``batch_wait_s`` for more to arrive. The
claim is the row claim every delivery goes through, so it works alike with the embedded table
queue and with PostgreSQL (procrastinate): a queue job whose task another worker already took
is dropped as a lost delivery. Each task keeps its own attempt (lease, heartbeat, finisher,
retries) and its own seeds; the batch stops early only when every task in it is cancelled (a
cancelled task's results are then discarded at store time).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ltxserve.db.models import Task
from ltxserve.engine.together import BatchKey, batch_key
from ltxserve.engine.together import generate_together as engine_together
from ltxserve.logs import get_logger
from ltxserve.protocol import ValidationContext, VideoInferenceTask, to_job

if TYPE_CHECKING:
    from ltxserve.config import Settings
    from ltxserve.db.repository import Store
    from ltxserve.engine import Engine, GenerationJob, GenerationResult, ProgressCallback
    from ltxserve.engine.types import ResultSink

log = get_logger(__name__)


class Worker(Protocol):
    """What batching needs of ``worker.runner.Worker`` (a protocol: no import loop with it)."""

    @property
    def id(self) -> str: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def engine(self) -> Engine: ...


class TaskRun(Protocol):
    """What batching needs of one task attempt (``worker.runner._TaskRun``)."""

    @property
    def pending(self) -> list[Any]: ...
    @property
    def sink(self) -> ResultSink | None: ...
    @property
    def progress(self) -> ProgressCallback | None: ...
    @property
    def cancel(self) -> threading.Event: ...
    @property
    def blog(self) -> Any: ...

    async def prepare(self) -> GenerationJob | None: ...

    async def generate_job(self, job: GenerationJob) -> None: ...

    def log_generated(self, batch: list[GenerationResult], job: GenerationJob, **extra: Any) -> None: ...

    async def hand_over(self, index: int, result: GenerationResult) -> None: ...


#: Queued rows looked at per scan for companions.
SCAN = 64
POLL_S = 0.05


def task_key(request: dict[str, Any]) -> tuple[str, BatchKey] | None:
    """The batch key of a persisted request (None: it runs alone)."""
    try:
        model = VideoInferenceTask.model_validate(
            request, context=ValidationContext(model_ids=(request["model"],))
        )
    except Exception as exc:  # a stored request always validated once; say so if it no longer does
        log.warning("queued request not batchable", error=repr(exc))
        return None
    if model.frame_image is not None:
        return None
    key = batch_key(to_job(model, image=None))
    return None if key is None else (str(request["model"]), key)


async def gather(worker: Worker, task: Task) -> list[Task]:
    """Claim queued tasks that can denoise with ``task`` (none when batching is off)."""
    settings = worker.settings
    if settings.batch_tasks <= 1:
        return []
    key = task_key(task.request)
    if key is None:
        return []
    deadline = time.monotonic() + settings.batch_wait_s
    companions: list[Task] = []
    seen: set[str] = {task.id}
    while True:
        for task_id, request in await worker.store.tasks.queued_requests(SCAN):
            if len(companions) + 1 >= settings.batch_tasks:
                break
            if task_id in seen:
                continue
            seen.add(task_id)
            if task_key(request) != key:
                continue
            claimed = await worker.store.tasks.claim(worker.id, settings.lease_s, task_id=task_id)
            row = await worker.store.tasks.get(claimed) if claimed is not None else None
            if row is not None:
                companions.append(row)
        remaining = deadline - time.monotonic()
        if len(companions) + 1 >= settings.batch_tasks or remaining <= 0:
            break
        # The tasks held so far have no heartbeat yet (it starts with their run): renew by hand.
        for held in (task, *companions):
            await worker.store.tasks.heartbeat(held.id, worker.id, settings.lease_s)
        await asyncio.sleep(min(POLL_S, remaining))
    if companions:
        log.info("batched", task_uuid=task.task_uuid, with_tasks=[t.task_uuid for t in companions])
    return companions


class _AllCancelled(threading.Event):
    """Set only when every task of the batch asked to stop."""

    def __init__(self, events: list[threading.Event]) -> None:
        super().__init__()
        self.events = events

    def is_set(self) -> bool:
        return all(e.is_set() for e in self.events)


class _Sinks:
    """The engine's batch-wide result indices -> each task's own streamed encodes."""

    def __init__(self, runs: Sequence[TaskRun]) -> None:
        self.where = [(run, i) for run in runs for i in range(len(run.pending))]

    def start(self, index: int, seed: int, audio: Any, sample_rate: int, fps: int) -> None:
        run, i = self.where[index]
        if run.sink is not None:
            run.sink.start(i, seed, audio, sample_rate, fps)

    def frames(self, index: int, chunk: Any) -> None:
        run, i = self.where[index]
        if run.sink is not None:
            run.sink.frames(i, chunk)


async def generate_together(worker: Worker, runs: Sequence[TaskRun]) -> None:
    """Generate every run's pending results in one engine batch and hand them to each finisher."""
    jobs, live = [], []
    for run in runs:
        job = await run.prepare()
        if job is not None:
            jobs.append(job)
            live.append(run)
    if len(live) == 1:
        await live[0].generate_job(jobs[0])
        return
    if not live:
        return
    for run, job in zip(live, jobs, strict=True):
        run.blog.info("generating", results=len(job.seeds), seeds=list(job.seeds), batch_tasks=len(live))

    def progress(step: int, total: int) -> None:
        for run in live:
            if run.progress is not None:
                run.progress(step, total)

    sinks = _Sinks(live) if worker.settings.stream_encode else None
    cancel = _AllCancelled([run.cancel for run in live])
    results = await asyncio.to_thread(engine_together, worker.engine, jobs, progress, cancel, sinks)
    for run, job, batch in zip(live, jobs, results, strict=True):
        run.log_generated(batch, job, batch_tasks=len(live))
        for index, result in enumerate(batch):
            await run.hand_over(index, result)
