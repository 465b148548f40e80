"""Queue position and ETA: the cost model, its calibration, and what clients and /metrics see."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ltxserve.blobs.local import LocalBlobStore
from ltxserve.config import Settings
from ltxserve.engine import Engine
from ltxserve.service import eta
from tests.api.conftest import LiveServer, server_settings, start_server, video_task

DEV = Settings().preset()


def test_work_counts_steps_tokens_passes_and_results() -> None:
    base = {"width": 256, "height": 128, "duration": 1, "fps": 16, "steps": 10, "CFGScale": 1.0}
    one = eta.task_work(base, DEV)
    tokens = 3 * (256 // 32) * (128 // 32) + 25  # 17 frames -> 3 latent frames, plus audio
    assert one.denoise == 10 * tokens
    assert eta.task_work({**base, "CFGScale": 4.0}, DEV).denoise == 2 * one.denoise  # CFG: 2 passes
    assert eta.task_work({**base, "numberResults": 3}, DEV).pixels == 3 * one.pixels
    assert eta.task_work({**base, "steps": 20}, DEV).denoise == 2 * one.denoise


def test_positions_and_finish_times_follow_the_queue() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    w = eta.Work(denoise=100.0, pixels=0.0)
    rates = eta.Rates(denoise=0.1, pixels=0.0, samples=1)  # 10 s per task
    entries = [
        eta.QueueEntry("r", "running", t0, w, 50.0),
        eta.QueueEntry("q2", "queued", t0 + timedelta(seconds=2), w, 0.0),
        eta.QueueEntry("q1", "queued", t0 + timedelta(seconds=1), w, 0.0),
    ]
    out = eta.estimate_all(entries, rates)
    assert out["r"] == eta.Estimate(None, 5.0)
    assert out["q1"] == eta.Estimate(1, 15.0)  # after the running one's 5 s, then its own 10
    assert out["q2"] == eta.Estimate(2, 25.0)
    assert eta.queued_seconds(entries, rates) == 20.0


def test_calibration_is_an_average_persisted_in_the_blob_store(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    w = eta.Work(denoise=1000.0, pixels=1000.0)

    async def run() -> tuple[eta.Rates, eta.Rates]:
        a = eta.Calibration(blobs, "m", worker="a")
        await a.record(w, denoise_s=2.0, rest_s=1.0)
        await a.record(w, denoise_s=4.0, rest_s=1.0)  # EMA: 0.7 x 0.002 + 0.3 x 0.004
        await eta.Calibration(blobs, "m", worker="b").record(w, denoise_s=1.0, rest_s=1.0)
        mine = (await a.load(fresh=True))["a"]
        return mine, await eta.Calibration(blobs, "m").rates()  # a new process reads it back

    mine, pool = asyncio.run(run())
    assert mine.samples == 2
    assert mine.denoise == pytest.approx(0.7 * 0.002 + 0.3 * 0.004)
    assert pool.denoise == pytest.approx((mine.denoise + 0.001) / 2)
    assert pool.samples == 3


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("eta"), model_path=engine.settings.model_path)
    yield from start_server(settings, engine)


def test_queued_tasks_show_position_and_eta_then_the_runs_calibrate(live: LiveServer) -> None:
    tasks = [video_task(width=256, height=256, duration=1, fps=16, steps=12) for _ in range(3)]
    assert live.post(tasks).status_code == 200
    last = tasks[-1]["taskUUID"]
    reply = live.post([{"taskType": "getResponse", "taskUUID": last}]).json()
    (item,) = reply["data"]
    assert item["status"] == "processing"  # queued behind the two others
    assert item["etaSeconds"] > 0
    assert item.get("queuePosition", 1) in (1, 2)
    metrics = httpx.get(f"{live.url}/metrics", timeout=30).text
    assert "ltxserve_queued_gpu_seconds{" in metrics
    done = [live.wait(t["taskUUID"])["data"][0] for t in tasks]
    assert all(d["status"] == "success" for d in done)
    assert "queuePosition" not in done[-1]
    assert "etaSeconds" not in done[-1]
    rates = live.call(live.runtime.service.calibration.rates())
    assert rates.samples >= 3  # every fresh run measured the rates


def test_admission_by_time_refuses_with_the_estimate(live: LiveServer) -> None:
    """With ``max_queue_wait_s``, a task that would start later than the bound is refused."""
    service = live.runtime.service
    # rates as of a slow machine: each tiny task is estimated at minutes
    slow = eta.Work(denoise=1.0, pixels=1.0)
    for _ in range(3):
        live.call(service.calibration.record(slow, denoise_s=300.0, rest_s=300.0))
    service.settings.max_queue_wait_s = 60.0
    try:
        first = video_task()
        assert live.post([first]).status_code == 200  # the queue is empty: it starts at once
        second = video_task()
        reply = live.post([second])
        assert reply.status_code == 429
        (error,) = reply.json()["errors"]
        assert error["code"] == "rateLimitExceeded"
        assert error["taskUUID"] == second["taskUUID"]
        assert error["estimatedStartSeconds"] > 60
        assert live.wait(first["taskUUID"])["data"][0]["status"] == "success"
    finally:
        service.settings.max_queue_wait_s = None
