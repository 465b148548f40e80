"""Item 8: the housekeeping sweep survives another node having done the work first.

Seen in a 100-kill crash run on PostgreSQL: two nodes re-queue the same stalled job, the
second ``retry_job`` raises ("Job was not found or has an invalid status to retry"), and
before the fix nothing caught it, so the rest of that sweep (expired outputs and uploads, ...)
waited for the next one.

A race between two processes cannot be timed from outside, so this test runs two nodes'
sweepers in one process against the real PostgreSQL and procrastinate, and forces the
interleaving: node B retries the stalled job between node A listing it and retrying it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ltxserve.config import Settings
from ltxserve.db.models import utcnow
from ltxserve.runtime import Runtime
from ltxserve.service.maintenance import Sweeper
from tests.scaleout.cluster import pg_available, pg_database, sql


async def test_sweep_survives_another_node_retrying_first(tmp_path: Path) -> None:
    reason = pg_available()
    if reason is not None:
        pytest.skip(reason)
    with pg_database("ltxserve_sweep") as url:
        settings = Settings(data_dir=tmp_path, database_url=url, lease_s=1)
        a = Runtime.build(settings, role="api")
        b = Runtime.build(settings, role="api")
        assert a.queue is not None
        assert b.queue is not None
        await a.store.migrate()
        await a.queue.start()
        await b.queue.start()
        try:
            # A job a worker took and never finished (no live worker: stalled).
            job_id = await a.queue.task.defer_async(task_id=str(uuid.uuid4()))
            sql(url, "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", job_id)
            # An expired upload the same sweep must still delete.
            key, _, _ = await a.store.keys.create("sweep")
            image_uuid = str(uuid.uuid4())
            storage_key = f"uploads/{image_uuid}.png"
            await a.blobs.put_bytes(storage_key, b"png", "image/png")
            await a.store.uploads.add(key.id, image_uuid, storage_key, utcnow() - timedelta(seconds=1))

            listing = a.queue.app.job_manager.get_stalled_jobs

            async def listing_then_other_node(**kwargs: Any) -> Any:
                jobs = list(await listing(**kwargs))
                await b.queue.recover()  # node B re-queues the same job first
                return jobs

            a.queue.app.job_manager.get_stalled_jobs = listing_then_other_node  # type: ignore[method-assign]
            await Sweeper(settings, a.service, a.queue).run_once()

            assert sql(url, "SELECT status FROM procrastinate_jobs WHERE id = %s", job_id) == [("todo",)]
            assert await a.store.uploads.get(key.id, image_uuid) is None  # the rest of the sweep ran
            assert not await a.blobs.exists(storage_key)
        finally:
            for node in (a, b):
                assert node.queue is not None
                await node.queue.stop()
                await node.store.close()
