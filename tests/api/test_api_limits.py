"""Output lifetime (ttl + sweeper) and admission limits, each on a server configured for it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from ltxserve.db.models import utcnow
from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server, video_task


@pytest.fixture(scope="module")
def short_ttl(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("ttl"), default_ttl_s=1, sweep_interval_s=0.2)
    yield from start_server(settings, engine)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(
        tmp_path_factory.mktemp("limits"), max_active_tasks_per_key=1, max_queue_length=1
    )
    yield from start_server(settings, engine)


def test_outputs_expire_after_default_ttl(short_ttl: LiveServer) -> None:
    (item,) = short_ttl.wait(short_ttl.submit())["data"]
    url = item["videoURL"]
    path = short_ttl.settings.data_dir / "files" / "videos" / url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    while httpx.get(url).status_code == 200:
        assert time.monotonic() < deadline, "file was not deleted after its ttl"
        time.sleep(0.1)
    assert httpx.get(url).status_code == 404
    assert not path.exists()


def test_explicit_ttl_is_honoured(short_ttl: LiveServer) -> None:
    task_uuid = short_ttl.submit(ttl=120)
    (item,) = short_ttl.wait(task_uuid)["data"]
    result = short_ttl.call(short_ttl.runtime.store.tasks.find_video(item["videoUUID"]))
    assert result is not None
    assert result.expires_at is not None
    assert result.finished_at is not None
    assert result.expires_at - result.finished_at == pytest.approx(
        timedelta(seconds=120), abs=timedelta(seconds=1)
    )
    time.sleep(1.5)  # well past the 1 s default: still served
    assert httpx.get(item["videoURL"]).status_code == 200
    # Once its time has come (moved forward here instead of waiting 2 minutes), the sweeper deletes it.
    short_ttl.call(_expire_now(short_ttl, item["videoUUID"]))
    deadline = time.monotonic() + 10
    while httpx.get(item["videoURL"]).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)


async def _expire_now(live: LiveServer, video_uuid: str) -> None:
    from sqlalchemy import update

    from ltxserve.db.models import Result

    async with live.runtime.store.session() as s:
        await s.execute(
            update(Result)
            .where(Result.video_uuid == video_uuid)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


def test_per_key_and_queue_limits(limited: LiveServer) -> None:
    slow = video_task(width=512, height=512, duration=2, fps=24, steps=100)
    assert limited.post([slow]).status_code == 200
    second = limited.post([video_task()])
    assert second.status_code == 429
    (error,) = second.json()["errors"]
    assert error["code"] == "rateLimitExceeded"
    assert error["taskUUID"]
    # Another key still gets in, until the shared queue is full.
    _, third_key, _ = limited.call(limited.runtime.store.keys.create("third"))
    deadline = time.monotonic() + 30
    while limited.call(limited.runtime.store.tasks.count_queued()) > 0:  # the slow task is claimed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    queued = video_task()
    assert limited.post([queued], key=limited.other_key).status_code == 200
    full = limited.post([video_task()], key=third_key)
    assert full.status_code == 429
    assert "queue is full" in full.json()["errors"][0]["message"]
    cancel = limited.post([{"taskType": "taskCancel", "taskUUID": slow["taskUUID"]}])
    assert cancel.status_code == 200
    assert limited.wait(slow["taskUUID"])["errors"][0]["code"] == "taskCancelled"
    limited.wait(queued["taskUUID"], key=limited.other_key)
