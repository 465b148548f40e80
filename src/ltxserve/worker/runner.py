"""The worker: claim -> generate -> encode -> store -> notify, one task at a time.

One attempt at a task runs here, with logs bound to the task; which states a task moves
through, and from where, is ``ltxserve.db.lifecycle``'s (an illegal end, e.g. of a task that
was queued again after its lease ran out, raises there and is dropped here). The engine runs in
a thread so the event loop keeps serving heartbeats, progress and (in embedded mode) the API.
Seeds were fixed at submission, so a task retried after a crash makes the same results again, and
results already stored by an earlier attempt are kept, not redone.

Task ids come from a ``TaskQueue`` (the tasks table, or procrastinate on PostgreSQL); the
worker claims the task row itself, so a duplicate or late delivery is dropped and a task whose
previous worker died is taken over only once its lease has run out (one more attempt counted).
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from ltxserve import metrics, tracing
from ltxserve.config import Settings
from ltxserve.db.lifecycle import TERMINAL, IllegalTransition, TaskStatus
from ltxserve.db.models import Task, utcnow
from ltxserve.engine import CapacityError, Engine, GenerationCancelled, GenerationJob, GenerationResult
from ltxserve.engine.resume import Checkpointing, GenerationPreempted
from ltxserve.logs import get_logger, printable
from ltxserve.media.encode import EncodeAborted, StreamingEncode, VideoFormat, encode_video, x264_preset
from ltxserve.protocol import ErrorCode, ValidationContext, VideoInferenceTask, to_job
from ltxserve.protocol.errors import unsupported
from ltxserve.queue import TableQueue, TaskQueue
from ltxserve.safety import NSFWChecker, SafetyMode, check_video
from ltxserve.service import eta
from ltxserve.service.core import Service, delete_checkpoints, video_key
from ltxserve.service.events import CANCEL_EVENT, TaskEvent
from ltxserve.worker import batching, checkpoints

log = get_logger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self, settings: Settings, service: Service, engine: Engine, queue: TaskQueue | None = None
    ) -> None:
        self.settings = settings
        self.service = service
        self.store = service.store
        self.engine = engine
        self.queue: TaskQueue = queue or TableQueue(service.store)
        self.id = worker_name()
        self.busy = False
        self._stopping = asyncio.Event()
        self.checker = NSFWChecker()  # loads its model on first use: never when no task asks
        self.overlap = worker_overlap(settings, engine)
        self._finishing: set[asyncio.Task[None]] = set()
        self.runs_in_hand: list[_TaskRun] = []
        # The first task pays one-off costs (lazy imports, allocator growth, kernel selection,
        # first text encoding): up to 50x a later run on CPU, so it is no ETA calibration sample.
        self.cold = True
        self.shapes: set[str] = set()  # shapes run here (service.eta.shape): the first is cold

    def wake(self) -> None:
        self.queue.wake()

    def stop(self) -> None:
        """Return from ``run`` after the task in hand (SIGTERM): with ``sigterm_action=checkpoint``
        that task is checkpointed at its next step and given back to the queue (preemption);
        with ``drain`` it is finished first."""
        self._stopping.set()
        if self.settings.sigterm_action == "checkpoint":
            for run in self.runs_in_hand:  # (tasks batched together drain: no checkpoints there)
                run.preempt.set()
        self.queue.wake()

    async def run(self) -> None:
        log.info("worker started", worker=self.id, queue=self.queue.name)
        metrics.WORKER_BUSY.set(0)
        metrics.WORKER_UP.set(1)
        try:
            await self.queue.consume(self.handle, self._stopping)
            await self.drain()
        finally:
            metrics.WORKER_UP.set(0)
        log.info("worker stopped", worker=self.id)

    async def handle(self, task_id: str) -> None:
        """One delivered task id: claim the row, then run it (or drop a delivery that lost)."""
        if self._stopping.is_set():
            await self.store.tasks.reenqueue(task_id)  # fetched while draining: leave it to another worker
            return
        claimed = await self.store.tasks.claim(self.id, self.settings.lease_s, task_id=task_id)
        if claimed is None:
            # Re-delivered after its worker died: take it over once the lease ran out (or end it
            # when it used up its attempts). Otherwise it is running elsewhere, or finished.
            recovered = await self.service.recover(task_ids=[task_id], enqueue=False)
            if recovered.requeued:
                claimed = await self.store.tasks.claim(self.id, self.settings.lease_s, task_id=task_id)
        if claimed is not None:
            await self.process(claimed)

    async def process(self, task_id: str) -> None:
        """Run one claimed task: the GPU stage here, the rest (safety, encode, store, deliver) in
        a finisher that, with overlap on, keeps going while the next task is generated."""
        task = await self.store.tasks.get(task_id)
        if task is None:
            return
        await self._room()
        # Queued tasks of the same shape join this one (worker.batching; off unless batch_tasks > 1).
        tasks = [task, *await batching.gather(self, task)]
        runs = [_TaskRun(self, t) for t in tasks]
        finishers = []
        for r in runs:  # each attempt's span is current for its finisher (copied at creation)
            with tracing.use(r.span):
                finishers.append(asyncio.create_task(r.finish(), name=f"finish-{r.task.task_uuid}"))
        # ... and the first one's for the generator (a batch generates once for all)
        with tracing.use(runs[0].span):
            self.busy = True
            self.runs_in_hand = runs
            if self._stopping.is_set() and self.settings.sigterm_action == "checkpoint":
                for r in runs:
                    r.preempt.set()
            metrics.WORKER_BUSY.set(1)
            try:
                if len(runs) == 1:
                    await runs[0].generate()
                else:
                    await batching.generate_together(self, runs)
            except BaseException as exc:  # the finishers decide what the failure means for each task
                for r in runs:
                    r.error = exc
            finally:
                for r in runs:
                    await r.results.put(None)
                self.busy = False
                self.runs_in_hand = []
                metrics.WORKER_BUSY.set(0)
        if self.overlap:
            for finisher in finishers:
                self._finishing.add(finisher)
                finisher.add_done_callback(self._finishing.discard)
        else:
            await asyncio.gather(*finishers)

    async def _room(self) -> None:
        """At most one task finishing while the next generates: bounded memory for frames."""
        while len(self._finishing) >= 1:
            await asyncio.wait(self._finishing, return_when=asyncio.FIRST_COMPLETED)

    async def drain(self) -> None:
        """Wait for the tasks still being encoded and stored (SIGTERM, end of ``run``)."""
        while self._finishing:
            await asyncio.wait(self._finishing)

    async def _fail(self, task: Task, code: str, message: str) -> None:
        done = await self.store.tasks.finish_task(task.id, code=code, message=message)
        if done is not None:
            await self.service.task_ended(done)

    async def _finish_result(
        self,
        row: Any,
        result: GenerationResult,
        fmt: VideoFormat,
        quality: int,
        ttl: int,
        safety_mode: SafetyMode,
        blog: Any,
        encoded: StreamingEncode | None = None,
    ) -> None:
        # Safety first: a result that must fail is never stored (a streamed encode's temporary
        # file is dropped with the task's temporary directory).
        nsfw: bool | None = None
        if safety_mode != "none":
            with tracing.span("safety", safety__mode=safety_mode):
                verdict = await asyncio.to_thread(
                    check_video,
                    result.frames,
                    result.fps,
                    safety_mode,
                    self.checker,
                    self.settings.nsfw_threshold,
                )
            nsfw = verdict.nsfw
            blog.info(
                "safety checked",
                mode=safety_mode,
                nsfw=nsfw,
                max_score=round(verdict.max_score, 4),
                frames=verdict.frames_checked,
                seconds=round(verdict.seconds, 3),
            )
            if nsfw and self.settings.nsfw_action == "fail":
                await self.store.tasks.fail_result(
                    row.id,
                    ErrorCode.NSFW_CONTENT_DETECTED,
                    "the generated video was flagged by the content check",
                )
                return
        # The videoUUID was fixed at submission: every attempt writes the same key (no orphans).
        video_uuid = row.video_uuid or str(uuid.uuid4())
        key = video_key(video_uuid, fmt)
        await self._store_video(result, fmt, quality, key, encoded)
        stored = await self.store.tasks.finish_result(
            row.id,
            video_uuid=video_uuid,
            storage_key=key,
            nsfw=nsfw,
            expires_at=utcnow() + timedelta(seconds=ttl),
        )
        if not stored:  # the result was ended meanwhile (cancelled): drop the file
            await self.service.blobs.delete(key)
            return
        blog.info("result stored", video_uuid=video_uuid, seed=row.seed, key=key)
        task = await self.store.tasks.get(row.task_id)
        if task is not None:
            stored_row = next(r for r in task.results if r.id == row.id)
            await self.service.deliver_result(task, stored_row)

    async def _store_video(
        self,
        result: GenerationResult,
        fmt: VideoFormat,
        quality: int,
        key: str,
        encoded: StreamingEncode | None = None,
    ) -> None:
        if encoded is not None:  # encoded while it was decoded: wait for the file's last bytes
            t0 = time.perf_counter()
            with tracing.span("encode", format=fmt.value, quality=quality, streamed=True):
                video = await asyncio.to_thread(encoded.result)
            t1 = time.perf_counter()
            metrics.STAGE_SECONDS.labels("encode").observe(t1 - t0)
            with tracing.span("store", key=key):
                await self.service.blobs.put_file(key, video.path, fmt.content_type)
            metrics.STAGE_SECONDS.labels("store").observe(time.perf_counter() - t1)
            return
        with tempfile.TemporaryDirectory(prefix="ltxserve-") as tmp:
            path = Path(tmp) / f"out{fmt.extension}"
            t0 = time.perf_counter()
            with tracing.span("encode", format=fmt.value, quality=quality, streamed=False):
                await asyncio.to_thread(
                    encode_video,
                    path,
                    result.frames,
                    result.fps,
                    result.audio,
                    result.sample_rate,
                    fmt,
                    quality,
                    x264_preset(choice=self.settings.x264_preset),
                )
            t1 = time.perf_counter()
            metrics.STAGE_SECONDS.labels("encode").observe(t1 - t0)
            with tracing.span("store", key=key):
                await self.service.blobs.put_file(key, path, fmt.content_type)
            metrics.STAGE_SECONDS.labels("store").observe(time.perf_counter() - t1)

    async def _heartbeat(self, task: Task, cancel: threading.Event) -> None:
        """Renew the lease; a cancelled (or lost) task stops the engine at its next step."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                still_mine = await self.store.tasks.heartbeat(task.id, self.id, self.settings.lease_s)
            except Exception:
                log.exception("heartbeat failed", task_uuid=task.task_uuid)
                continue
            if not still_mine:
                log.info("task cancelled or lost its lease; stopping", task_uuid=task.task_uuid)
                cancel.set()
                return


def worker_overlap(settings: Settings, engine: Engine) -> bool:
    """Overlap GPU work with encoding on GPUs; on a CPU both stages want the same cores."""
    if settings.worker_overlap == "auto":
        return engine.device.type == "cuda"
    return settings.worker_overlap == "on"


class _TaskRun:
    """One attempt at one task: ``generate`` feeds results to ``finish`` through a small queue.

    The finisher owns the outcome: it stores each result as it arrives (a crash keeps them),
    then ends the task, or turns a failure of either side into cancel / retry / error. Its
    failure stops the generator at the next step (the cancel event), and it keeps the lease
    alive until the last file is stored.
    """

    def __init__(self, worker: Worker, task: Task) -> None:
        self.worker = worker
        self.task = task
        self.blog = log.bind(
            task_uuid=task.task_uuid, task_id=task.id, attempt=task.attempts, worker=worker.id
        )
        self.cancel = threading.Event()
        self.preempt = threading.Event()  # SIGTERM: checkpoint at the next step, give the task back
        self.checkpoints: checkpoints.CheckpointWriter | None = None
        self.results: asyncio.Queue[tuple[Any, GenerationResult, StreamingEncode | None] | None] = (
            asyncio.Queue(maxsize=1)
        )
        self.error: BaseException | None = None
        self.model: VideoInferenceTask | None = None
        self.work: eta.Work | None = None
        self.fresh = False
        self.denoise_s = 0.0
        self.sink: _EncodeSink | None = None
        self.pending: list[Any] = []  # result rows this attempt makes
        self.progress: _Progress | None = None
        self.started = time.perf_counter()
        self.beat = asyncio.create_task(worker._heartbeat(task, self.cancel))
        # taskCancel reaches the engine at once (in-process, or NOTIFY from another node); it
        # stops at its next denoising step. The heartbeat remains the fallback (a lost NOTIFY).
        self.stop_listening = worker.service.bus.subscribe(task.id, self._on_event)
        if task.cancel_requested:
            self.cancel.set()
        metrics.TASK_ATTEMPTS.inc()
        # The task's trace, continued from the row: the queue wait, then this attempt.
        trace_parent = tracing.parent(task.trace_context)
        if task.attempts == 1 and task.started_at is not None:
            wait = (task.started_at - task.created_at).total_seconds()
            metrics.STAGE_SECONDS.labels("queue_wait").observe(max(wait, 0.0))
            queued = tracing.start("queue", trace_parent, start_time=task.created_at)
            tracing.end(queued, end_time=task.started_at)
        self.span = tracing.start(
            "attempt",
            trace_parent,
            task__uuid=task.task_uuid,
            task__attempt=task.attempts,
            worker__id=worker.id,
        )

    async def _on_event(self, event: TaskEvent) -> None:
        if event.kind == CANCEL_EVENT and not self.cancel.is_set():
            self.blog.info("cancel requested; stopping at the next step")
            self.cancel.set()

    async def prepare(self) -> GenerationJob | None:
        """Rebuild the job from the persisted request, for the results not yet made (None: all
        made); set up its progress reporting and streamed encodes."""
        worker, task = self.worker, self.task
        served = worker.settings.served_model_ids()
        if task.request["model"] not in served:
            # An API node configured for other models than this worker: never run a request on
            # weights it did not ask for.
            raise CapacityError("model", f"this worker runs {', '.join(served)}, not {task.request['model']}")
        model = VideoInferenceTask.model_validate(
            task.request, context=ValidationContext(model_ids=(task.request["model"],))
        )
        self.model = model
        self.pending = [r for r in task.results if r.status not in TERMINAL]
        if not self.pending:
            return None
        image = None
        if model.frame_image is not None:
            image = await worker.service.images.load_upload(task.api_key_id, model.frame_image.value)
        job = replace(to_job(model, image=image), seeds=tuple(r.seed for r in self.pending))
        loop = asyncio.get_running_loop()
        self.progress = _Progress(worker, task, loop, done=len(task.results) - len(self.pending))
        self.work = eta.task_work(task.request, worker.settings.preset())
        self.progress.estimate = (self.work, await worker.service.calibration.rates())
        self.fresh = len(self.pending) == len(task.results)  # a whole run: a calibration sample
        if worker.settings.stream_encode:
            self.sink = _EncodeSink(
                VideoFormat(model.output_format),
                model.output_quality,
                x264_preset(choice=worker.settings.x264_preset),
            )
        return job

    def log_generated(self, batch: list[GenerationResult], job: GenerationJob, **extra: Any) -> None:
        t = batch[0].timings
        self.blog.info(
            "generated",
            results=len(batch),
            enhance_s=round(t.enhance, 3),
            text_encode_s=round(t.text_encode, 3),
            denoise_s=round(t.denoise, 3),
            video_decode_s=round(t.video_decode, 3),
            audio_decode_s=round(t.audio_decode, 3),
            prompt=printable(batch[0].prompt) if job.enhance_prompt else None,
            **extra,
        )

    async def hand_over(self, index: int, result: GenerationResult) -> None:
        """Result ``index`` of the pending ones to the finisher (waits while it is still busy:
        bounded memory)."""
        encoded = self.sink.close(index) if self.sink is not None else None
        await self.results.put((self.pending[index], result, encoded))

    async def generate(self) -> None:
        # 1. rebuild the job from the persisted request; only results not yet made
        job = await self.prepare()
        if job is None:
            return
        await self.generate_job(job)

    async def generate_job(self, job: GenerationJob) -> None:
        worker, blog = self.worker, self.blog
        size = f"{job.width}x{job.height}"
        blog.info("generating", results=len(job.seeds), seeds=list(job.seeds), size=size)
        # 2. generate in a thread; progress comes back through the loop, throttled; step
        #    checkpoints go to the blob store, and an earlier attempt's last one is resumed
        ck = await self._checkpointing(asyncio.get_running_loop())
        self.fresh = self.fresh and (ck is None or ck.resume is None)
        batches = worker.engine.generate_batches(
            job, self.progress, self.cancel, sink=self.sink, checkpoint=ck
        )
        index = 0
        # the engine's stage spans (enhance, text_encode, denoise, decode) nest in this one
        with tracing.span("generate", results=len(job.seeds)):
            try:
                while True:
                    t0 = time.perf_counter()
                    batch = await asyncio.to_thread(next, batches, None)
                    if batch is None:
                        break
                    metrics.STAGE_SECONDS.labels("generate").observe(time.perf_counter() - t0)
                    self.log_generated(batch, job)
                    self.denoise_s = batch[0].timings.denoise  # the job's total so far
                    # 3. hand each result to the finisher
                    for result in batch:
                        await self.hand_over(index, result)
                        index += 1
            finally:
                await asyncio.to_thread(batches.close)

    async def _checkpointing(self, loop: asyncio.AbstractEventLoop) -> Checkpointing | None:
        settings, task = self.worker.settings, self.task
        periodic = settings.checkpoint_every_steps > 0 or settings.checkpoint_every_s > 0
        if not periodic and settings.sigterm_action != "checkpoint":
            return None
        blobs = self.worker.service.blobs
        state = await checkpoints.load_latest(blobs, task.id, task.attempts, self.blog)
        if state is not None:
            metrics.CHECKPOINTS.labels("resumed").inc()
            self.blog.info(
                "resuming from a checkpoint", stage=state.stage, step=state.step, progress=state.progress
            )
        self.checkpoints = checkpoints.CheckpointWriter(blobs, task.id, task.attempts, loop, self.blog)
        return Checkpointing(
            save=self.checkpoints.save,
            every_steps=settings.checkpoint_every_steps,
            every_seconds=settings.checkpoint_every_s,
            resume=state,
            preempt=self.preempt,
        )

    async def finish(self) -> None:
        worker, blog = self.worker, self.blog
        failure: BaseException | None = None
        try:
            while (item := await self.results.get()) is not None:
                if failure is not None:
                    continue  # draining after a failure: the generator is being stopped
                row, result, encoded = item
                assert self.model is not None
                try:
                    await worker._finish_result(
                        row,
                        result,
                        VideoFormat(self.model.output_format),
                        self.model.output_quality,
                        self.model.ttl or worker.settings.default_ttl_s,
                        self.model.safety.effective_mode,
                        blog,
                        encoded,
                    )
                except Exception as exc:
                    failure = exc
                    self.cancel.set()
            await self._conclude(failure or self.error)
        finally:
            tracing.end(self.span, failure or self.error)
            if self.sink is not None:
                await asyncio.to_thread(self.sink.discard)
            self.beat.cancel()
            self.stop_listening()
            seconds = time.perf_counter() - self.started
            metrics.STAGE_SECONDS.labels("total").observe(seconds)
            blog.info("task attempt ended", seconds=round(seconds, 3))

    async def _conclude(self, error: BaseException | None) -> None:
        try:
            await self._end(error)
        except IllegalTransition as exc:
            # The task moved on without this worker (its lease ran out and it was queued again,
            # or taken over): the new attempt owns it now.
            self.blog.warning("task moved on meanwhile; this attempt's end is dropped", reason=str(exc))

    async def _end(self, error: BaseException | None) -> None:
        worker, task, blog = self.worker, self.task, self.blog
        if isinstance(error, GenerationPreempted):
            # the state goes to the store before the task goes back: the next worker resumes it
            stored = self.checkpoints is None or await self.checkpoints.flush(worker.settings.preempt_grace_s)
            released = await worker.store.tasks.release(task.id, worker.id, refund_attempt=True)
            metrics.PREEMPTIONS.inc()
            blog.warning(
                "task preempted: checkpointed and given back",
                progress=error.state.progress if error.state else None,
                checkpoint_stored=stored,
                released=released,
            )
            return
        await self._end_checkpoints(error)
        if error is None:
            await self._calibrate()
            done = await worker.store.tasks.finish_task(task.id)
            if done is not None:
                await worker.service.task_ended(done)
            blog.info("task finished", status=done.status if done else None)
        elif isinstance(error, GenerationCancelled):
            blog.info("task cancelled")
            done = await worker.store.tasks.finish_task(
                task.id,
                code=ErrorCode.TASK_CANCELLED,
                message="cancelled by the client",
                status=TaskStatus.CANCELLED,
            )
            if done is not None:
                await worker.service.task_ended(done)
        elif isinstance(error, CapacityError):
            blog.warning("task refused by the capacity check", parameter=error.parameter, reason=str(error))
            await worker._fail(task, unsupported(error.parameter), str(error))
        elif isinstance(error, Exception):
            blog.error("task attempt failed", exc_info=error)
            if task.attempts < worker.settings.max_attempts:
                await worker.store.tasks.release(task.id, worker.id)
                worker.wake()
            else:
                await worker._fail(task, ErrorCode.INFERENCE_ERROR, f"generation failed: {error}")
        else:
            raise error  # CancelledError, KeyboardInterrupt: not ours to swallow

    async def _calibrate(self) -> None:
        """A whole, fresh run measures this worker's rates for the ETA model (``service.eta``)."""
        cold, self.worker.cold = self.worker.cold, False
        shape = eta.shape(self.task.request, self.worker.settings.preset())
        new_shape = shape not in self.worker.shapes
        self.worker.shapes.add(shape)
        if not self.fresh or self.work is None or self.denoise_s <= 0:
            return
        total = time.perf_counter() - self.started
        if cold:
            self.blog.info("first task of this worker: no calibration sample", seconds=round(total, 3))
            return
        rest_s = max(total - self.denoise_s, 0.0)
        try:
            rates = await self.worker.service.calibration.record(
                self.work, self.denoise_s, rest_s, cold=new_shape
            )
        except Exception as exc:
            self.blog.warning("calibration not stored", error=repr(exc))
            return
        # measured vs estimated parts (the estimate this task was given when it started)
        used = self.progress.estimate[1] if self.progress and self.progress.estimate else rates
        self.blog.info(
            "calibration updated",
            denoise_s=round(self.denoise_s, 3),
            estimated_denoise_s=round(self.work.denoise_seconds(used), 3),
            rest_s=round(rest_s, 3),
            estimated_rest_s=round(self.work.rest_seconds(used), 3),
            estimate_error=round(self.work.seconds(used) / max(total, 1e-9) - 1, 3),
            denoise_rate=f"{rates.denoise:.3g}",
            step_s=f"{rates.step:.3g}",
            pixel_rate=f"{rates.pixels:.3g}",
            overhead_s=round(rates.overhead, 3),
            samples=rates.samples,
            new_shape=new_shape,
        )

    async def _end_checkpoints(self, error: BaseException | None) -> None:
        """A task that ends now needs no checkpoint; one that will be retried keeps them."""
        retried = (
            isinstance(error, Exception)
            and not isinstance(error, (GenerationCancelled, CapacityError))
            and self.task.attempts < self.worker.settings.max_attempts
        )
        if self.checkpoints is not None:
            await self.checkpoints.flush()
        if not retried:
            await delete_checkpoints(self.worker.service.blobs, self.task.id, self.task.attempts)


class _EncodeSink:
    """The engine's ``ResultSink``: one streamed file encode per result, started at its audio and
    fed its frames while they are decoded, in a temporary directory kept until the task ends."""

    def __init__(self, fmt: VideoFormat, quality: int, preset: str) -> None:
        self.fmt = fmt
        self.quality = quality
        self.preset = preset
        self._tmp = tempfile.TemporaryDirectory(prefix="ltxserve-")
        self._encodes: dict[int, StreamingEncode] = {}
        self._handed: set[int] = set()

    def start(self, index: int, seed: int, audio: Any, sample_rate: int, fps: int) -> None:
        path = Path(self._tmp.name) / f"{index}-{seed}{self.fmt.extension}"
        self._encodes[index] = StreamingEncode(
            path, fps, audio, sample_rate, self.fmt, self.quality, self.preset
        )

    def frames(self, index: int, chunk: Any) -> None:
        self._encodes[index].put(chunk)

    def close(self, index: int) -> StreamingEncode | None:
        """All frames of result ``index`` are in: let its encode finish."""
        encode = self._encodes.get(index)
        if encode is not None:
            encode.close()
            self._handed.add(index)
        return encode

    def discard(self) -> None:
        """End of the attempt: stop unfinished encodes (generation failed) and drop the files."""
        for encode in self._encodes.values():
            encode.abort(None)
        for index, encode in self._encodes.items():
            try:
                encode.result()
            except EncodeAborted:
                pass  # stopped here, because generation did not finish
            except Exception as exc:
                if index not in self._handed:  # a handed-over encode reports through its result
                    log.warning("streamed encode failed", index=index, error=repr(exc))
        self._tmp.cleanup()


class _Progress:
    """The engine's progress callback (called from its thread) -> store + WebSocket, throttled."""

    def __init__(self, worker: Worker, task: Task, loop: asyncio.AbstractEventLoop, done: int) -> None:
        self.worker = worker
        self.task = task
        self.loop = loop
        self.total_results = len(task.results)
        self.done_results = done
        self.last = 0.0
        self.floor = task.progress or 0.0  # a resumed task never shows less than it had shown
        self.estimate: tuple[eta.Work, eta.Rates] | None = None  # for etaSeconds (service.eta)
        # Updates run one at a time, in the order they were made: two in flight could otherwise
        # write and push out of order (a later, lower percentage overtaking a higher one).
        self._order = asyncio.Lock()

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step < total and now - self.last < self.worker.settings.progress_interval_s:
            return
        self.last = now
        # Share of the whole task: results already made count as complete.
        remaining = self.total_results - self.done_results
        pct = 100.0 * (self.done_results + remaining * step / total) / self.total_results
        pct = max(min(pct, 99.0), self.floor)  # 100 only once the files are stored
        self.floor = pct
        asyncio.run_coroutine_threadsafe(self._publish(pct), self.loop)

    async def _publish(self, pct: float) -> None:
        async with self._order:
            await self._publish_now(pct)

    async def _publish_now(self, pct: float) -> None:
        try:
            await self.worker.store.tasks.set_progress(self.task.id, pct)
            await self.worker.service.bus.publish(
                TaskEvent(
                    self.task.id,
                    "progress",
                    {
                        "taskUUID": self.task.task_uuid,
                        "progress": round(pct),
                        "etaSeconds": round(self.estimate[0].remaining(self.estimate[1], pct), 1)
                        if self.estimate is not None
                        else 0.0,
                    },
                )
            )
        except Exception:
            log.exception("progress update failed", task_uuid=self.task.task_uuid)
