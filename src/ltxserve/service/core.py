"""The service: what each Runware task does, independent of the transport (REST or WebSocket).

``submit`` persists a task (and its per-result seeds) before the ack, ``results`` answers
getResponse from the store, ``upload`` keeps an image for later tasks of the same key. Both
transports call these and share one error vocabulary (``ltxserve.protocol.errors``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ltxserve import metrics, tracing
from ltxserve.blobs.base import BlobStore
from ltxserve.config import Settings
from ltxserve.db.lifecycle import TERMINAL, TaskStatus
from ltxserve.db.models import ApiKey, Result, Task
from ltxserve.db.repository import Store
from ltxserve.db.tasks import LimitReached, NewResult, Requeued, SubmitLimits, TaskConflict
from ltxserve.delivery import Deliverer, webhook_body
from ltxserve.engine.capacity import CapacityError
from ltxserve.engine.types import GenerationJob
from ltxserve.logs import get_logger
from ltxserve.media.encode import VideoFormat
from ltxserve.net import FetchError, SafeHttpClient
from ltxserve.protocol import (
    ErrorCode,
    ErrorDetail,
    GetResponseTask,
    ImageUploadTask,
    MediaStorageTask,
    RunwareError,
    VideoInferenceTask,
    ack_item,
    image_upload_item,
    processing_item,
    result_error,
    result_seeds,
    to_job,
    video_success_item,
)
from ltxserve.protocol.errors import invalid, unsupported
from ltxserve.service import eta
from ltxserve.service.events import CANCEL_EVENT, EventBus, Listener, TaskEvent
from ltxserve.service.images import ImageResolver, frame_image_parameter

log = get_logger(__name__)

#: ``plan(job)`` raises CapacityError for jobs the workers cannot run (None: not checked here).
CapacityCheck = Callable[[GenerationJob], Any]


@dataclass
class Reply:
    data: list[dict[str, Any]]
    errors: list[ErrorDetail]


def video_key(video_uuid: str, fmt: str) -> str:
    """The blob key of a result video: ``videos/<videoUUID>.<ext>``."""
    return f"videos/{video_uuid}{VideoFormat(fmt).extension}"


def checkpoint_key(task_id: str, attempt: int) -> str:
    """One object per attempt (``ltxserve.worker.checkpoints``): a stale worker never overwrites
    the state its successor resumes from."""
    return f"checkpoints/{task_id}/{attempt}.pt"


async def delete_checkpoints(blobs: BlobStore, task_id: str, attempts: int) -> None:
    """Remove the step checkpoints of an ended task (failures logged: they only cost space).

    ``attempts`` is the task's count; the object after it is removed too: a preempted attempt is
    given back uncounted (``release(refund_attempt=True)``), so its state carries the number
    after the count of a task that waits for its next claim."""
    for attempt in range(1, attempts + 2):
        key = checkpoint_key(task_id, attempt)
        try:
            await blobs.delete(key)
        except Exception as exc:
            log.warning("checkpoint not deleted", task_id=task_id, key=key, error=repr(exc))


class Service:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        blobs: BlobStore,
        bus: EventBus,
        capacity: CapacityCheck | None = None,
        wake: Callable[[], None] | None = None,
        http: SafeHttpClient | None = None,
        deliverer: Deliverer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.bus = bus
        self.capacity = capacity
        self.wake = wake or (lambda: None)
        self.http = http
        self.deliverer = deliverer
        self.images = ImageResolver(settings, store, blobs, http)
        self.calibration = eta.Calibration(blobs, eta.model_name(settings))
        self._estimates: tuple[float, dict[str, eta.Estimate], float] | None = None

    # --- URLs -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where clients reach this deployment (``public_base_url``, else host and port)."""
        base = self.settings.public_base_url or f"http://{self.settings.host}:{self.settings.port}"
        return base.rstrip("/")

    def file_url(self, key: str) -> str:
        """The public URL of a stored blob (``/files/<key>``)."""
        return f"{self.base_url}/files/{key}"

    # --- keys and subscriptions ---------------------------------------------------------------

    async def authenticate(self, api_key: str) -> ApiKey | None:
        """The active key for a secret (None: unknown or revoked)."""
        return await self.store.keys.authenticate(api_key)

    async def active_key(self, key: ApiKey) -> ApiKey | None:
        """``key``'s current row, None once revoked (as cached as ``authenticate``): open
        WebSockets ask before every message, so revocation and rotation reach them."""
        return await self.store.keys.active_key(key.id)

    async def subscribe(self, key: ApiKey, task_uuid: str, listener: Listener) -> Callable[[], None] | None:
        """Send a task's events (progress, results) to ``listener``; returns the unsubscribe
        function, or None when the key has no such task."""
        task = await self.store.tasks.find(key.id, task_uuid)
        if task is None:
            return None
        return self.bus.subscribe(task.id, listener)

    # --- videoInference ---------------------------------------------------------------------

    async def submit(self, key: ApiKey, task: VideoInferenceTask) -> dict[str, Any]:
        """Validate what needs the server (limits, image, capacity), persist, enqueue, ack.

        Its span (under the HTTP request's) heads the task's trace; its context is stored on the row."""
        with tracing.span(
            "videoInference", task__uuid=task.task_uuid, task__results=task.number_results
        ) as span:
            try:
                return await self._submit(key, task)
            except RunwareError as exc:
                span.set_attribute("error.code", str(exc.errors[0].code) if exc.errors else "")
                raise

    async def _submit(self, key: ApiKey, task: VideoInferenceTask) -> dict[str, Any]:
        blog = log.bind(task_uuid=task.task_uuid, api_key=key.prefix)
        # 1. limits: per key, then the whole queue (checked early to spare the work below;
        #    enforced again, atomically, when the task is inserted)
        if await self.store.tasks.count_active(key.id) >= self.settings.max_active_tasks_per_key:
            raise RunwareError(self._limit_error(task, "key"))
        if await self.store.tasks.count_queued() >= self.settings.max_queue_length:
            raise RunwareError(self._limit_error(task, "queue"))
        #    admission by time: refuse a task that would wait longer than the bound (service.eta)
        if self.settings.max_queue_wait_s is not None:
            start = await self.queue_start_seconds()
            if start > self.settings.max_queue_wait_s:
                error = self._error(
                    task,
                    ErrorCode.RATE_LIMIT_EXCEEDED,
                    f"The queue is about {round(start)} s long; this server starts tasks within "
                    f"{round(self.settings.max_queue_wait_s)} s. Retry later.",
                )
                error.extra["estimatedStartSeconds"] = round(start, 1)
                raise RunwareError(error)
        # 2. delivery targets must pass the same address policy as image URLs
        for parameter, url in (("webhookURL", task.webhook_url), ("uploadEndpoint", task.upload_endpoint)):
            if url is not None and self.http is not None:
                try:
                    await self.http.check(url)
                except FetchError as exc:
                    raise RunwareError(
                        self._error(task, invalid(parameter), f"{parameter} {exc}", parameter=parameter)
                    ) from None
        # 3. the first-frame image: decoded now, so a bad image is refused before the ack
        ref = task.frame_image
        image = None
        if ref is not None:
            image, source = await self.images.load_with_source(
                ref, frame_image_parameter(task), task.task_uuid, task.task_type, key
            )
        # 4. capacity: refuse what the hardware cannot do before queueing it
        seeds = result_seeds(task)
        if self.capacity is not None:
            try:
                self.capacity(to_job(task, image=image))
            except CapacityError as exc:
                raise RunwareError(
                    ErrorDetail(
                        unsupported(exc.parameter),
                        str(exc),
                        exc.parameter,
                        task.task_type,
                        task.task_uuid,
                    )
                ) from exc
        # 5. an inline image is kept like an imageUpload: the stored task refers to its imageUUID
        request = task.model_dump(mode="json", by_alias=True, exclude_none=True)
        if ref is not None and image is not None:
            if ref.kind == "uuid":
                image_uuid = ref.value
            else:
                image_uuid, _ = await self.images.save(key, image, source, (task.task_type, task.task_uuid))
            request.pop("frameImages", None)
            request["inputs"] = {"frameImages": [{"image": image_uuid, "frame": "first"}]}
        # 6. persist task + one row per result (seed, cost) in one transaction
        cost = round(self.settings.price_per_second * task.duration, 6)
        trace_context = tracing.carrier()  # this span's: workers and deliveries continue under it
        try:
            with tracing.span("enqueue"):  # task + result rows and the queue job, one transaction
                row = await self.store.tasks.submit(
                    key.id,
                    task.task_uuid,
                    task.task_type,
                    request,
                    [NewResult(seed=s, cost=cost) for s in seeds],
                    limits=SubmitLimits(
                        self.settings.max_active_tasks_per_key, self.settings.max_queue_length
                    ),
                    trace_context=trace_context,
                )
        except LimitReached as exc:
            raise RunwareError(self._limit_error(task, exc.which)) from None
        except TaskConflict:
            raise RunwareError(
                self._error(
                    task,
                    ErrorCode.CONFLICT_TASK_UUID,
                    f"taskUUID {task.task_uuid} was already used; send every task with a new UUID.",
                    parameter="taskUUID",
                )
            ) from None
        blog.info("task accepted", task_id=row.id, results=len(seeds), seeds=list(seeds))
        self.wake()
        return ack_item(task.task_uuid)

    async def results(self, key: ApiKey, query: GetResponseTask) -> Reply:
        """One item per requested result; another key's task looks exactly like an unknown one."""
        task = await self._own_task(key, query.task_uuid, "getResponse")
        return await self.result_items_with_uploads(task)

    async def _own_task(self, key: ApiKey, task_uuid: str, task_type: str) -> Task:
        task = await self.store.tasks.find(key.id, task_uuid)
        if task is None:
            raise RunwareError(
                ErrorDetail(
                    ErrorCode.TASK_NOT_FOUND,
                    f"No task with taskUUID {task_uuid} was found for this API key.",
                    "taskUUID",
                    task_type,
                    task_uuid,
                )
            )
        return task

    async def queue_estimates(self, task_id: str | None = None) -> tuple[dict[str, eta.Estimate], float]:
        """Position and time to finish of every active task, and the queued GPU-seconds
        (``service.eta``); computed at most once a second however often clients poll (sooner
        for a task the last computation did not see)."""
        now = time.monotonic()
        cached = self._estimates
        if cached is not None and now - cached[0] < 1.0 and (task_id is None or task_id in cached[1]):
            return cached[1], cached[2]
        preset = self.settings.preset()
        entries = [
            eta.QueueEntry(task_id, status, created, eta.task_work(request, preset), progress)
            for task_id, status, created, request, progress in await self.store.tasks.active_tasks()
        ]
        rates = await self.calibration.rates()
        estimates, queued = eta.estimate_all(entries, rates), eta.queued_seconds(entries, rates)
        self._estimates = (now, estimates, queued)
        return estimates, queued

    async def queue_start_seconds(self) -> float:
        """When a task accepted now would start (admission by time)."""
        preset = self.settings.preset()
        entries = [
            eta.QueueEntry(task_id, status, created, eta.task_work(request, preset), progress)
            for task_id, status, created, request, progress in await self.store.tasks.active_tasks()
        ]
        return eta.start_seconds(entries, await self.calibration.rates())

    async def result_items_with_uploads(self, task: Task) -> Reply:
        """Result items; with an uploadEndpoint each success item says how its upload went;
        while the task is active each item carries its queue position and estimated seconds to
        finish (``queuePosition``, ``etaSeconds``: extra fields the official SDKs pass over)."""
        reply = self.result_items(task)
        if task.status not in TERMINAL and reply.data:
            estimate = (await self.queue_estimates(task.id))[0].get(task.id)
            if estimate is not None:
                for item in reply.data:
                    item.update(eta.wire_fields(estimate))
        if task.request.get("uploadEndpoint") and reply.data and task.status in TERMINAL:
            states = {
                d.result_id: d.status
                for d in await self.store.deliveries.for_task(task.id)
                if d.kind == "upload"
            }
            by_uuid = {r.video_uuid: r.id for r in task.results}
            for item in reply.data:
                status = states.get(by_uuid.get(item.get("videoUUID"), ""), "pending")
                item["uploadStatus"] = {"delivered": "uploaded"}.get(status, status)
        return reply

    def result_items(self, task: Task) -> Reply:
        """getResponse items: all ``processing`` until the task ends, then one per result.

        A numberResults > 1 task reports its results together, when the last one is stored:
        ``runware`` 0.5.24 appends the finished items of every poll to what it already holds,
        so results reported at different polls would come back duplicated.
        """
        data: list[dict[str, Any]] = []
        errors: list[ErrorDetail] = []
        if task.status not in TERMINAL:
            return Reply([processing_item(task.task_uuid, round(task.progress)) for _ in task.results], [])
        include_cost = bool(task.request.get("includeCost"))
        for r in task.results:
            if r.status == TaskStatus.SUCCESS:
                data.append(self.success_item(task, r, include_cost))
            else:
                errors.append(
                    result_error(
                        task.task_uuid,
                        r.error_code or ErrorCode.INFERENCE_ERROR,
                        r.error_message or "generation failed",
                    )
                )
        return Reply(data, errors)

    def success_item(self, task: Task, r: Result, include_cost: bool) -> dict[str, Any]:
        """The wire item of a stored result (``cost`` only when the request asked for it)."""
        assert r.video_uuid is not None
        assert r.storage_key is not None
        return video_success_item(
            task.task_uuid,
            video_uuid=r.video_uuid,
            video_url=self.file_url(r.storage_key),
            seed=r.seed,
            nsfw_content=r.nsfw,  # only when a content check ran
            cost=r.cost if include_cost else None,
        )

    async def cancel(self, key: ApiKey, task_uuid: str) -> Reply:
        """``taskCancel``: a queued task ends at once, a running one stops within one step."""
        task = await self._own_task(key, task_uuid, "taskCancel")
        updated = await self.store.tasks.request_cancel(task.id)
        if updated is not None and updated.status == TaskStatus.CANCELLED:
            # cancelled while queued: no worker ends it, so its checkpoints (a preempted or a
            # crashed attempt's) go now
            await delete_checkpoints(self.blobs, updated.id, updated.attempts)
            await self.publish_results(updated)
        elif updated is not None and updated.status not in TERMINAL:
            await self.bus.publish(TaskEvent(updated.id, CANCEL_EVENT))  # the worker stops at once
        return Reply([{"taskType": "taskCancel", "taskUUID": task_uuid}], [])

    async def task_ended(self, task: Task) -> None:
        """A task reached its end: count its results (metrics) and publish them."""
        if task.status in TERMINAL:
            for r in task.results:
                metrics.RESULTS.labels(r.status).inc()
        await self.publish_results(task)

    async def recover(
        self, *, all_running: bool = False, task_ids: Collection[str] | None = None, enqueue: bool = True
    ) -> Requeued:
        """Tasks whose worker stopped heartbeating go back to the queue, or end after
        ``max_attempts`` (then their results are published like any other end, and their step
        checkpoints deleted)."""
        recovered = await self.store.tasks.recover(
            self.settings.max_attempts, all_running=all_running, task_ids=task_ids, enqueue=enqueue
        )
        for task_id in recovered.requeued:
            log.warning("lease expired: task back in the queue", task_id=task_id)
        for task_id in recovered.failed:
            task = await self.store.tasks.get(task_id)
            log.error(
                "task gave up after too many attempts",
                task_id=task_id,
                task_uuid=task.task_uuid if task is not None else None,
            )
            if task is not None:
                await self.task_ended(task)
                await delete_checkpoints(self.blobs, task.id, task.attempts)
        return recovered

    async def publish_results(self, task: Task) -> None:
        """Push a finished task's items to whoever listens for it (WebSocket connections)."""
        if task.status not in TERMINAL:
            return
        reply = await self.result_items_with_uploads(task)
        payload = {"data": reply.data, "errors": [e.to_wire() for e in reply.errors]}
        await self.bus.publish(TaskEvent(task.id, "result", payload))
        webhook = task.request.get("webhookURL")
        if webhook and self.deliverer is not None:
            failed = [r for r in task.results if r.status != TaskStatus.SUCCESS]
            for r, error in zip(failed, reply.errors, strict=True):
                body = webhook_body(error.to_wire(), self.settings.webhook_envelope, error=True)
                await self.deliverer.enqueue(
                    task_id=task.id,
                    result_id=r.id,
                    kind="webhook",
                    url=webhook,
                    body=body,
                    trace_context=task.trace_context,
                )

    async def deliver_result(self, task: Task, result: Result) -> None:
        """A result was stored: its webhook and upload go out now (not when the task ends)."""
        if self.deliverer is None:
            return
        webhook, upload = task.request.get("webhookURL"), task.request.get("uploadEndpoint")
        if webhook:
            item = self.success_item(task, result, bool(task.request.get("includeCost")))
            body = webhook_body(item, self.settings.webhook_envelope)
            await self.deliverer.enqueue(
                task_id=task.id,
                result_id=result.id,
                kind="webhook",
                url=webhook,
                body=body,
                trace_context=task.trace_context,
            )
        if upload and result.storage_key:
            fmt = VideoFormat(task.request.get("outputFormat", "MP4"))
            await self.deliverer.enqueue(
                task_id=task.id,
                result_id=result.id,
                kind="upload",
                url=upload,
                blob_key=result.storage_key,
                content_type=fmt.content_type,
                trace_context=task.trace_context,
            )

    # --- imageUpload ------------------------------------------------------------------------

    async def upload(self, key: ApiKey, task: ImageUploadTask) -> dict[str, Any]:
        """``imageUpload``: keep an image for later tasks of the same key."""
        image, source = await self.images.load_with_source(
            task.image, "image", task.task_uuid, "imageUpload", key
        )
        image_uuid, stored = await self.images.save(key, image, source, ("imageUpload", task.task_uuid))
        return image_upload_item(task.task_uuid, image_uuid, self.file_url(stored))

    async def media_storage(self, key: ApiKey, task: MediaStorageTask) -> dict[str, Any]:
        """runware-sdk 1.8.0's ``mediaStorage``: upload an image (like imageUpload) or delete one."""
        if task.operation == "upload":
            assert task.media is not None
            image, source = await self.images.load_with_source(
                task.media, "media", task.task_uuid, "mediaStorage", key
            )
            media_uuid, stored = await self.images.save(key, image, source, ("mediaStorage", task.task_uuid))
            return {
                "taskType": "mediaStorage",
                "taskUUID": task.task_uuid,
                "operation": "upload",
                "mediaUUID": media_uuid,
                "mediaURL": self.file_url(stored),
            }
        assert task.media_uuid is not None
        row = await self.store.uploads.get(key.id, task.media_uuid)
        if row is None:
            raise RunwareError(
                ErrorDetail(
                    invalid("mediaUUID"),
                    f"mediaUUID {task.media_uuid} is not an upload of this API key",
                    "mediaUUID",
                    "mediaStorage",
                    task.task_uuid,
                )
            )
        await self.blobs.delete(row.storage_key)
        await self.store.uploads.delete(row.image_uuid)
        return {
            "taskType": "mediaStorage",
            "taskUUID": task.task_uuid,
            "operation": "delete",
            "mediaUUID": task.media_uuid,
        }

    def _limit_error(self, task: VideoInferenceTask, which: str) -> ErrorDetail:
        if which == "key":
            message = (
                f"This API key already has {self.settings.max_active_tasks_per_key} tasks queued or "
                "running; wait for one to finish."
            )
        else:
            message = "The server's queue is full; retry later."
        return self._error(task, ErrorCode.RATE_LIMIT_EXCEEDED, message)

    def _error(
        self, task: VideoInferenceTask, code: str, message: str, parameter: str | None = None
    ) -> ErrorDetail:
        return ErrorDetail(code, message, parameter, task.task_type, task.task_uuid)
