"""Batching across requests: queued tasks of one shape denoise in one batch, embedded and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from ltxserve.engine import Engine, GenerationJob
from ltxserve.testing import LiveServer, server_settings, start_server, video_task
from ltxserve.worker import runner
from tests.scaleout.cluster import pg_available, pg_database

#: video_task's shape (128x128, 1 s at 8 fps, 2 steps, CFGScale 1)
SHAPE = GenerationJob(prompt="", width=128, height=128, duration=1, fps=8, steps=2, guidance=1.0, seeds=(0,))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, engine: Engine
) -> Iterator[LiveServer]:
    with contextlib.ExitStack() as stack:
        extra: dict[str, Any] = {}
        if request.param == "postgresql":
            reason = pg_available()
            if reason is not None:
                pytest.skip(reason)
            extra["database_url"] = stack.enter_context(pg_database("ltxserve_batch"))
        # A full batch starts at once; the wait bounds only a batch that does not fill.
        settings = server_settings(
            tmp_path_factory.mktemp(f"batch-{request.param}"), batch_tasks=3, batch_wait_s=60, **extra
        )
        yield from start_server(settings, engine)


def test_queued_tasks_denoise_together_and_match_running_alone(
    live: LiveServer, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[tuple[str, Any]] = []
    original = runner._TaskRun.hand_over

    async def record(self: runner._TaskRun, index: int, result: Any) -> None:
        handed.append((self.task.task_uuid, result))
        await original(self, index, result)

    monkeypatch.setattr(runner._TaskRun, "hand_over", record)
    tasks = [
        video_task(positivePrompt="a red kite over green hills", seed=5, numberResults=2),
        video_task(positivePrompt="waves on a pebble beach", seed=9),
        video_task(positivePrompt="a red kite over green hills", seed=21),
    ]
    assert live.post(tasks).status_code == 200
    for task in tasks:
        items = live.wait(task["taskUUID"])["data"]
        assert [i["status"] for i in items] == ["success"] * task.get("numberResults", 1)
    assert len(handed) == 4
    assert len({id(result.timings) for _, result in handed}) == 1  # one engine call made them all
    by_task = {t["taskUUID"]: t for t in tasks}
    for task_uuid, result in handed:
        task = by_task[task_uuid]
        alone = GenerationJob(
            prompt=task["positivePrompt"],
            width=128,
            height=128,
            duration=1,
            fps=8,
            steps=2,
            guidance=1.0,
            seeds=(0,),
        )
        (single,) = engine.generate(replace(alone, seeds=(result.seed,)))
        assert result.prompt == task["positivePrompt"]
        assert int(np.abs(result.frames.astype(int) - single.frames.astype(int)).max()) <= 1
        assert np.abs(result.audio - single.audio).max() < 1e-4
    seeds = sorted(result.seed for _, result in handed)
    assert seeds == [5, 6, 9, 21]  # each task kept its own seeds
