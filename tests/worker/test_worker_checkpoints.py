"""Step checkpoints in the worker: written to the blob store, deleted with the task, and a failed
write never fails the task (it is logged and counted)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ltxserve import metrics
from ltxserve.blobs.base import StorageUnavailable
from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server, video_task


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("checkpoints"), checkpoint_every_steps=1)
    yield from start_server(settings, engine)


def _count(outcome: str) -> float:
    return float(metrics.CHECKPOINTS.labels(outcome)._value.get())


def test_checkpoints_are_written_then_deleted_with_the_task(live: LiveServer) -> None:
    written = _count("written")
    task = video_task(steps=4)
    assert live.post([task]).status_code == 200
    (item,) = live.wait(task["taskUUID"])["data"]
    assert item["status"] == "success"
    assert _count("written") > written  # at least one of the 4 steps' states reached the store
    root: Path = live.runtime.settings.data_dir / "files" / "checkpoints"
    assert not list(root.rglob("*.pt"))


def test_checkpoint_write_failures_never_fail_the_task(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = live.runtime.service.blobs
    original = blobs.put_bytes

    async def failing(key: str, data: bytes, content_type: str) -> Any:
        if key.startswith("checkpoints/"):
            raise StorageUnavailable("injected: the object store is down")
        return await original(key, data, content_type)

    monkeypatch.setattr(blobs, "put_bytes", failing)
    failed = _count("failed")
    task = video_task(steps=4)
    assert live.post([task]).status_code == 200
    (item,) = live.wait(task["taskUUID"])["data"]
    assert item["status"] == "success"
    assert _count("failed") > failed
