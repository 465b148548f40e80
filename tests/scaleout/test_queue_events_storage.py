"""The scale-out building blocks in one process, against real PostgreSQL and SeaweedFS:
procrastinate enqueue in the task's transaction, orphan reconciliation, the LISTEN/NOTIFY event
bus across processes' worth of connections (and its reconnection), S3 storage with retries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ltxserve.blobs import BlobNotFound, RangeNotSatisfiable, StorageUnavailable
from ltxserve.blobs.s3 import S3BlobStore
from ltxserve.config import Settings
from ltxserve.db.repository import Store
from ltxserve.db.tasks import NewResult, TaskConflict
from ltxserve.queue.postgres import ProcrastinateQueue
from ltxserve.service.events import PostgresEventBus, TaskEvent
from tests.scaleout.cluster import BUCKET, S3_KEY, S3_SECRET, Weed, sql, terminate_backends
from tests.scaleout.conftest import sqlalchemy_url


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[tuple[Store, ProcrastinateQueue]]:
    settings = Settings(database_url=pg_url, lease_s=2, heartbeat_s=0.5)
    store = Store(sqlalchemy_url(pg_url))
    await store.migrate()
    queue = ProcrastinateQueue(settings, store.url)
    store.enqueue = queue.enqueue
    await queue.start()
    yield store, queue
    await queue.stop()
    await store.close()


def _jobs(url: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in sql(url, "SELECT args->>'task_id', status::text FROM procrastinate_jobs")]


async def test_job_is_enqueued_in_the_task_transaction(
    pg_url: str, pg_store: tuple[Store, ProcrastinateQueue]
) -> None:
    store, _ = pg_store
    key, _, _ = await store.keys.create("q")
    task = await store.tasks.submit(key.id, "t-1", "videoInference", {}, [NewResult(seed=1, cost=None)])
    assert _jobs(pg_url) == [(task.id, "todo")]
    # A conflicting submission rolls back: no task row and no job.
    with pytest.raises(TaskConflict):
        await store.tasks.submit(key.id, "t-1", "videoInference", {}, [NewResult(seed=1, cost=None)])
    assert _jobs(pg_url) == [(task.id, "todo")]

    async def failing_hook(session: object, task_id: str) -> None:
        raise RuntimeError("enqueue failed after the insert")

    with pytest.raises(RuntimeError):
        await store.tasks.submit(
            key.id, "t-2", "videoInference", {}, [NewResult(seed=1, cost=None)], failing_hook
        )
    assert await store.tasks.find(key.id, "t-2") is None  # the task row went with the failed enqueue


async def test_release_and_lease_recovery_enqueue_again(
    pg_url: str, pg_store: tuple[Store, ProcrastinateQueue]
) -> None:
    store, _ = pg_store
    key, _, _ = await store.keys.create("q")
    task = await store.tasks.submit(key.id, "t", "videoInference", {}, [NewResult(seed=1, cost=None)])
    sql(pg_url, "DELETE FROM procrastinate_jobs")
    assert await store.tasks.claim("w1", 60, task.id) == task.id
    assert await store.tasks.claim("w1", 60, task.id) == task.id  # a retried claim of our own: still ours
    assert await store.tasks.claim("w2", 60, task.id) is None
    assert await store.tasks.release(task.id, "w1")
    assert _jobs(pg_url) == [(task.id, "todo")]
    sql(pg_url, "DELETE FROM procrastinate_jobs")
    assert await store.tasks.claim("w2", 0.01, task.id) == task.id
    await asyncio.sleep(0.05)
    recovered = await store.tasks.recover(max_attempts=5)
    assert recovered.requeued == [task.id]
    assert _jobs(pg_url) == [(task.id, "todo")]


async def test_reconcile_gives_an_orphaned_task_a_job(
    pg_url: str, pg_store: tuple[Store, ProcrastinateQueue]
) -> None:
    store, queue = pg_store
    key, _, _ = await store.keys.create("q")
    task = await store.tasks.submit(key.id, "t", "videoInference", {}, [NewResult(seed=1, cost=None)])
    sql(pg_url, "DELETE FROM procrastinate_jobs")
    assert await queue.reconcile() == 0  # too young: its own transaction may still be committing
    sql(pg_url, "UPDATE tasks SET created_at = created_at - interval '1 minute'")
    assert await queue.reconcile() == 1
    assert _jobs(pg_url) == [(task.id, "todo")]
    assert await queue.reconcile() == 0


async def test_consume_delivers_each_task_once_and_drains(pg_store: tuple[Store, ProcrastinateQueue]) -> None:
    store, queue = pg_store
    key, _, _ = await store.keys.create("q")
    ids = [
        (await store.tasks.submit(key.id, f"t{i}", "videoInference", {}, [NewResult(seed=i, cost=None)])).id
        for i in range(3)
    ]
    seen: list[str] = []
    stopping = asyncio.Event()

    async def handle(task_id: str) -> None:
        seen.append(task_id)
        if len(seen) == len(ids):
            stopping.set()  # stop while the last one is "running": it must still complete
            await asyncio.sleep(0.3)

    t0 = time.monotonic()
    await asyncio.wait_for(queue.consume(handle, stopping), timeout=30)
    assert sorted(seen) == sorted(ids)
    assert time.monotonic() - t0 < 15


async def test_events_cross_connections_and_survive_termination(pg_url: str) -> None:
    big = {"data": [{"x": "y" * 9000}]}

    async def reload(task_id: str) -> dict[str, object]:
        return big

    publisher, listener = PostgresEventBus(pg_url), PostgresEventBus(pg_url, reloader=reload)
    await publisher.start()
    await listener.start()
    got: asyncio.Queue[TaskEvent] = asyncio.Queue()

    async def on_event(event: TaskEvent) -> None:
        await got.put(event)

    listener.subscribe("task-a", on_event)
    try:
        await publisher.publish(TaskEvent("task-b", "progress", {"progress": 1}))  # nobody listens
        await publisher.publish(TaskEvent("task-a", "progress", {"taskUUID": "u", "progress": 40}))
        event = await asyncio.wait_for(got.get(), 5)
        assert (event.task_id, event.kind, event.payload) == (
            "task-a",
            "progress",
            {"taskUUID": "u", "progress": 40},
        )
        # Results travel as a reference, rebuilt from the store on the listening node (its URLs).
        await publisher.publish(TaskEvent("task-a", "result", {"data": ["as the worker saw it"]}))
        assert (await asyncio.wait_for(got.get(), 5)).payload == big
        # So does anything too large for NOTIFY.
        await publisher.publish(TaskEvent("task-a", "progress", big))
        assert (await asyncio.wait_for(got.get(), 5)).payload == big
        # Every connection of the database killed: the listener reconnects, the publisher too.
        assert terminate_backends(pg_url) >= 2
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            await publisher.publish(TaskEvent("task-a", "progress", {"progress": 99}))
            try:
                event = await asyncio.wait_for(got.get(), 0.5)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no event after the connections were terminated")
        assert event.payload == {"progress": 99}
    finally:
        await publisher.stop()
        await listener.stop()


def _s3(weed: Weed, **overrides: object) -> S3BlobStore:
    values: dict[str, object] = {
        "s3_endpoint_url": weed.endpoint,
        "s3_bucket": BUCKET,
        "s3_access_key_id": S3_KEY,
        "s3_secret_access_key": S3_SECRET,
        "s3_prefix": "unit/",
        "storage_retry_s": 60,
    }
    values.update(overrides)
    return S3BlobStore(Settings(**values))  # type: ignore[arg-type]


async def test_s3_store_roundtrip_and_ranges(weed_up: Weed, tmp_path: Path) -> None:
    blobs = _s3(weed_up)
    await blobs.ping()
    data = bytes(range(256)) * 40
    src = tmp_path / "v.mp4"
    src.write_bytes(data)
    await blobs.put_file("videos/a.mp4", src, "video/mp4")
    assert "unit/videos/a.mp4" in weed_up.keys("unit/")
    assert await blobs.get_bytes("videos/a.mp4") == data
    assert await blobs.exists("videos/a.mp4")
    whole = await blobs.open("videos/a.mp4")
    assert (whole.status, whole.size, whole.length) == (200, len(data), len(data))
    assert b"".join([c async for c in whole.chunks]) == data
    part = await blobs.open("videos/a.mp4", "bytes=100-199")
    assert (part.status, part.content_range, part.length) == (206, f"bytes 100-199/{len(data)}", 100)
    assert b"".join([c async for c in part.chunks]) == data[100:200]
    tail = await blobs.open("videos/a.mp4", "bytes=-10")
    assert b"".join([c async for c in tail.chunks]) == data[-10:]
    with pytest.raises(RangeNotSatisfiable):
        await blobs.open("videos/a.mp4", f"bytes={len(data) + 5}-")
    await blobs.delete("videos/a.mp4")
    await blobs.delete("videos/a.mp4")  # idempotent
    assert not await blobs.exists("videos/a.mp4")
    with pytest.raises(BlobNotFound):
        await blobs.get_bytes("videos/a.mp4")
    with pytest.raises(BlobNotFound):
        await blobs.open("videos/a.mp4")


@pytest.mark.slow
async def test_s3_put_waits_out_an_outage(weed_up: Weed) -> None:
    """The store goes away: a put retries until it is back, then lands; reads say 503 meanwhile."""
    blobs = _s3(weed_up)
    weed_up.stop()
    with pytest.raises(StorageUnavailable):
        await blobs.ping()
    with pytest.raises(StorageUnavailable):
        await blobs.open("videos/x.mp4")
    restart = threading.Timer(3.0, weed_up.start)
    restart.start()
    t0 = time.monotonic()
    try:
        await blobs.put_bytes("videos/outage.mp4", b"still here", "video/mp4")
    finally:
        restart.join()
    assert time.monotonic() - t0 >= 3.0  # it really waited for the store
    assert await blobs.get_bytes("videos/outage.mp4") == b"still here"
    short = _s3(weed_up, storage_retry_s=1)
    weed_up.stop()
    with pytest.raises(StorageUnavailable):  # bounded: it gives up after the window
        await short.put_bytes("videos/never.mp4", b"x", "video/mp4")
    weed_up.start()
