"""Step checkpoints of running tasks in the blob store (local disk or S3), beside the outputs.

Key ``checkpoints/<task id>/<attempt>.pt``: each attempt writes its own object (a put is atomic on
both backends: local disk writes a temporary file and renames it, an S3 PUT is all or nothing), so
a stale worker that lost its lease can never overwrite the state the next attempt resumes from.
A new attempt resumes from the newest readable state of the attempts before it (the engine then
checks the state's validity key). The objects are deleted when the task ends.

Writes happen off the denoising loop: the engine hands a state (CPU tensors) over and goes on; a
background task serializes and stores the newest one (older unsent states are dropped). A failed
write is logged and counted (``ltxserve_checkpoints_total{outcome="failed"}``), never fatal.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ltxserve import metrics
from ltxserve.blobs.base import BlobNotFound, BlobStore
from ltxserve.engine.resume import StepState
from ltxserve.service.core import checkpoint_key

CONTENT_TYPE = "application/x-ltxserve-checkpoint"


class CheckpointWriter:
    """Stores the states of one attempt in the background, newest first, never raising."""

    def __init__(
        self, blobs: BlobStore, task_id: str, attempt: int, loop: asyncio.AbstractEventLoop, blog: Any
    ):
        self.blobs = blobs
        self.key = checkpoint_key(task_id, attempt)
        self.loop = loop
        self.blog = blog
        self._pending: StepState | None = None
        self._writer: asyncio.Task[None] | None = None
        self.written: StepState | None = None  # the newest state stored

    def save(self, state: StepState) -> None:
        """The engine's hand-over (called on its thread)."""
        self.loop.call_soon_threadsafe(self._offer, state)

    def _offer(self, state: StepState) -> None:
        self._pending = state
        if self._writer is None or self._writer.done():
            self._writer = self.loop.create_task(self._write(), name=f"checkpoint-{self.key}")

    async def _write(self) -> None:
        while (state := self._pending) is not None:
            self._pending = None
            t0 = time.perf_counter()
            try:
                data = await asyncio.to_thread(state.to_bytes)
                await self.blobs.put_bytes(self.key, data, CONTENT_TYPE)
            except Exception as exc:
                metrics.CHECKPOINTS.labels("failed").inc()
                self.blog.error("checkpoint write failed; the task goes on", key=self.key, error=repr(exc))
                continue
            metrics.CHECKPOINTS.labels("written").inc()
            self.written = state
            self.blog.info(
                "checkpoint written",
                key=self.key,
                stage=state.stage,
                step=state.step,
                progress=state.progress,
                bytes=len(data),
                seconds=round(time.perf_counter() - t0, 3),
            )

    async def flush(self, within: float | None = None) -> bool:
        """Wait for the writes handed over so far; False when ``within`` seconds ran out first."""
        await asyncio.sleep(0)  # let hand-overs queued by the engine thread arrive
        writer = self._writer
        if writer is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(writer), within)
        except TimeoutError:
            return False
        return True


async def load_latest(blobs: BlobStore, task_id: str, attempt: int, blog: Any) -> StepState | None:
    """The newest readable state of the attempts before ``attempt`` (and of ``attempt`` itself: a
    preempted attempt is given back without being counted, so the next one has its number)."""
    for earlier in range(attempt, 0, -1):
        key = checkpoint_key(task_id, earlier)
        try:
            data = await blobs.get_bytes(key)
        except (BlobNotFound, FileNotFoundError):
            continue
        except Exception as exc:
            blog.warning("checkpoint unreadable, trying an older one", key=key, error=repr(exc))
            continue
        try:
            return await asyncio.to_thread(StepState.from_bytes, data)
        except ValueError as exc:
            metrics.CHECKPOINTS.labels("refused").inc()
            blog.warning("checkpoint refused, trying an older one", key=key, reason=str(exc))
    return None
