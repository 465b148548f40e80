"""Worker overlap: the next task is generated while the previous one is encoded and stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server, video_task


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("overlap"), worker_overlap="on")
    yield from start_server(settings, engine)


def test_next_task_generates_while_previous_is_stored(live: LiveServer) -> None:
    assert live.runtime.worker is not None
    assert live.runtime.worker.overlap
    # Encoding noise at quality 99 is slow enough to overlap with the next task's denoising.
    first = video_task(width=512, height=512, duration=2, fps=24, steps=2, outputQuality=99, numberResults=2)
    second = video_task(width=512, height=512, duration=2, fps=24, steps=2, outputQuality=99)
    assert live.post([first, second]).status_code == 200
    a = live.wait(first["taskUUID"])["data"]
    b = live.wait(second["taskUUID"])["data"]
    assert [i["status"] for i in a + b] == ["success"] * 3
    key = live.call(live.runtime.store.keys.authenticate(live.key))
    task_a = live.call(live.runtime.store.tasks.find(key.id, first["taskUUID"]))
    task_b = live.call(live.runtime.store.tasks.find(key.id, second["taskUUID"]))
    assert task_a.finished_at > task_b.started_at  # B was claimed before A was done
    assert task_a.attempts == task_b.attempts == 1
