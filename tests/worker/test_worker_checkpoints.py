"""Step checkpoints in the worker: written to the blob store (durably on local disk), deleted with
the task (a preempted one cancelled while queued included), and a failed write never fails the
task (it is logged and counted)."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ltxserve import metrics
from ltxserve.blobs.base import StorageUnavailable
from ltxserve.blobs.local import LocalBlobStore
from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server, video_task

T = TypeVar("T")


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


@pytest.fixture
def stoppable(tmp_path: Path, engine: Engine) -> Iterator[LiveServer]:
    """A server of its own: its worker is stopped (preempted) by the test."""
    yield from start_server(server_settings(tmp_path, checkpoint_every_steps=1), engine)


def test_a_task_cancelled_while_queued_after_a_preemption_leaves_no_checkpoint(
    stoppable: LiveServer,
) -> None:
    """Preempted (checkpointed and given back, its attempt not counted), then cancelled before
    another worker claims it: no worker ends it, so the cancel deletes its state."""
    live, tasks = stoppable, stoppable.runtime.store.tasks
    task = video_task(width=512, height=512, duration=2, fps=24, steps=100)
    assert live.post([task]).status_code == 200
    root = live.runtime.settings.data_dir / "files" / "checkpoints"
    (state, *_) = _until(lambda: list(root.rglob("*.pt")))
    task_id = state.parent.name

    async def preempt() -> None:  # what SIGTERM does (sigterm_action=checkpoint)
        assert live.runtime.worker is not None
        live.runtime.worker.stop()

    live.call(preempt())
    row = _until(lambda: (t := live.call(tasks.get(task_id))).status == "queued" and t)
    assert row.attempts == 0  # a preemption is not a failed attempt
    assert list((root / task_id).glob("*.pt"))  # the state the next worker would resume from
    assert live.post([{"taskType": "taskCancel", "taskUUID": task["taskUUID"]}]).status_code == 200
    assert live.wait(task["taskUUID"])["errors"][0]["code"] == "taskCancelled"
    assert not list(root.rglob("*.pt"))


def _until(probe: Callable[[], T], timeout: float = 120) -> T:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("put", ["put_bytes", "put_file", "put_file across filesystems"])
def test_local_puts_are_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, put: str
) -> None:
    """A checkpoint (or output) on local disk survives a power loss once its put returned: the
    data is synced before the rename makes it visible, and the directory after it."""
    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def spy_replace(src: Any, dst: Any) -> None:
        events.append("rename")
        replace(src, dst)

    def no_link(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    if put.endswith("across filesystems"):
        monkeypatch.setattr(os, "link", no_link)
    blobs = LocalBlobStore(tmp_path / "store")
    data = b"state" * 1000
    src = tmp_path / "src.pt"
    if put == "put_bytes":
        asyncio.run(blobs.put_bytes("checkpoints/t/1.pt", data, "application/octet-stream"))
    else:
        src.write_bytes(data)
        asyncio.run(blobs.put_file("checkpoints/t/1.pt", src, "application/octet-stream"))
    assert events == ["fsync file", "rename", "fsync dir"]
    stored = tmp_path / "store" / "checkpoints" / "t" / "1.pt"
    assert stored.read_bytes() == data
    if put == "put_file":  # same filesystem: the file was linked, its bytes not copied
        assert stored.stat().st_ino == src.stat().st_ino
    elif put != "put_bytes":
        assert stored.stat().st_ino != src.stat().st_ino
    assert not list((tmp_path / "store").rglob("*.part"))
