"""Queue position and ETA: the cost model, its calibration, and what clients and /metrics see."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ltxserve.blobs.local import LocalBlobStore
from ltxserve.config import Settings
from ltxserve.engine import Engine
from ltxserve.presets import PRESETS
from ltxserve.service import eta
from tests.api.conftest import LiveServer, server_settings, start_server, video_task

DEV = Settings().preset()


def test_work_counts_steps_tokens_passes_and_results() -> None:
    base = {"width": 256, "height": 128, "duration": 1, "fps": 16, "steps": 10, "CFGScale": 1.0}
    one = eta.task_work(base, DEV)
    # The engine generates 17 frames (8k + 1 >= 16: 3 latent frames) and sizes the audio latents
    # for those 17 frames at 16 fps (diffusers: round(17 / 16 x 16000 / 160 / 4) = 27), not 25.
    tokens = 3 * (256 // 32) * (128 // 32) + 27
    assert one.denoise == 10 * tokens
    assert one.pixels == 256 * 128 * 17  # the generated frames are decoded
    assert one.steps == 10  # one transformer call per step, whatever its rows (passes, results)
    assert eta.task_work({**base, "CFGScale": 4.0}, DEV).denoise == 2 * one.denoise  # CFG: 2 passes
    assert eta.task_work({**base, "numberResults": 3}, DEV).pixels == 3 * one.pixels
    assert eta.task_work({**base, "numberResults": 3}, DEV).denoise == 3 * one.denoise
    assert eta.task_work({**base, "steps": 20}, DEV).denoise == 2 * one.denoise
    distilled = PRESETS["distilled"]  # 8 steps without guidance, whatever was asked
    assert eta.task_work({**base, "CFGScale": 4.0}, distilled).denoise == 8 * tokens
    assert eta.task_work({**base, "CFGScale": 4.0}, distilled).steps == 8


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
    assert eta.start_seconds(entries, rates) == 25.0


def test_a_running_task_has_its_whole_pixels_part_left_until_it_ends() -> None:
    """``progress`` counts denoising steps: at 99% the decode, encode and store are still ahead
    (most of a small task's time); the old ``(1 - progress) x total`` said 1% of it was left."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    w = eta.Work(denoise=100.0, pixels=1000.0, steps=5)
    # denoise 0.5 + 0.5 s, rest 4 + 1 s
    rates = eta.Rates(denoise=0.005, pixels=0.004, samples=5, overhead=1.0, step=0.1)
    assert w.seconds(rates) == pytest.approx(6.0)
    assert w.remaining(rates, 50.0) == pytest.approx(5.5)
    assert w.remaining(rates, 99.0) == pytest.approx(5.01)
    entries = [
        eta.QueueEntry("r", "running", t0, w, 99.0),
        eta.QueueEntry("q", "queued", t0 + timedelta(seconds=1), w, 0.0),
    ]
    out = eta.estimate_all(entries, rates)
    assert out["r"].seconds == pytest.approx(5.01)
    assert out["q"].seconds == pytest.approx(11.01)


def test_calibration_is_a_median_persisted_in_the_blob_store(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    w = eta.Work(denoise=1000.0, pixels=1000.0)

    async def run() -> tuple[eta.Rates, eta.Rates]:
        a = eta.Calibration(blobs, "m", worker="a")
        await a.record(w, denoise_s=2.0, rest_s=1.0)
        await a.record(w, denoise_s=4.0, rest_s=1.0)
        await a.record(w, denoise_s=3.0, rest_s=1.0)  # median: 0.003 s per unit
        await eta.Calibration(blobs, "m", worker="b").record(w, denoise_s=1.0, rest_s=1.0)
        mine = (await a.load(fresh=True))["a"]
        return mine, await eta.Calibration(blobs, "m").rates()  # a new process reads it back

    mine, pool = asyncio.run(run())
    assert mine.samples == 3
    assert mine.denoise == pytest.approx(0.003)
    assert pool.denoise == pytest.approx((0.003 + 0.001) / 2)
    assert pool.samples == 4


def test_one_slow_task_does_not_skew_the_rates(tmp_path: Path) -> None:
    """A cold or disturbed run (here 30x) among steady ones: the rates stay the steady ones (an
    average seeded with it overestimated every task that followed, by up to 46% in the bench)."""
    blobs = LocalBlobStore(tmp_path)

    def steady(w: eta.Work) -> tuple[float, float]:  # 1e-5 s per unit + 10 ms a step; 1e-6 s/px + 0.5 s
        return 1e-5 * w.denoise + 0.01 * w.steps, 1e-6 * w.pixels + 0.5

    works = [
        eta.Work(2000.0, 1e6, 8),
        eta.Work(6000.0, 4e6, 4),
        eta.Work(5000.0, 1.5e6, 16),
        eta.Work(8000.0, 3e6, 6),
        eta.Work(3000.0, 2.5e6, 12),
    ]

    async def run() -> eta.Rates:
        cal = eta.Calibration(blobs, "m", worker="a")
        d, r = steady(works[0])
        await cal.record(works[0], denoise_s=30 * d, rest_s=30 * r)
        for w in works[1:]:
            await cal.record(w, *steady(w))
        return await cal.rates()

    rates = asyncio.run(run())
    assert rates.denoise == pytest.approx(1e-5)
    assert rates.step == pytest.approx(0.01)
    assert rates.pixels == pytest.approx(1e-6)
    assert rates.overhead == pytest.approx(0.5)
    for w in works:
        assert w.seconds(rates) == pytest.approx(sum(steady(w)))


def test_first_runs_of_a_shape_count_until_three_warm_runs_exist(tmp_path: Path) -> None:
    """A shape's first run on a worker pays one-off costs (here 3x): the rates come from the warm
    runs once there are three of them, however many cold ones there were."""
    blobs = LocalBlobStore(tmp_path)
    works = [eta.Work(2000.0 * k, 1e6 * k, 8) for k in (1, 2, 3, 4)]

    def steady(w: eta.Work) -> tuple[float, float]:
        return 1e-5 * w.denoise + 0.01 * w.steps, 1e-6 * w.pixels + 0.5

    async def run() -> list[eta.Rates]:
        cal = eta.Calibration(blobs, "m", worker="a")
        seen = []
        for w in works:  # each shape's first run: cold
            d, r = steady(w)
            seen.append(await cal.record(w, 3 * d, 3 * r, cold=True))
        for w in works[:3]:  # then warm runs
            seen.append(await cal.record(w, *steady(w)))
        return seen

    seen = asyncio.run(run())
    assert seen[3].pixels == pytest.approx(3e-6)  # only cold runs so far: they are what there is
    assert seen[5].pixels > 1.1e-6  # two warm runs: not yet enough to leave the cold ones out
    rates = seen[6]
    assert (rates.denoise, rates.step) == pytest.approx((1e-5, 0.01))
    assert (rates.pixels, rates.overhead) == pytest.approx((1e-6, 0.5))


def test_shapes_tell_runs_with_new_tensors_apart() -> None:
    base = {"width": 256, "height": 128, "duration": 1, "fps": 16, "steps": 10, "CFGScale": 1.0}
    assert eta.shape({**base, "steps": 20, "seed": 3}, DEV) == eta.shape(base, DEV)  # same tensors
    for change in ({"width": 384}, {"duration": 2}, {"fps": 24}, {"numberResults": 2}, {"CFGScale": 4.0}):
        assert eta.shape({**base, **change}, DEV) != eta.shape(base, DEV)


def test_rest_line_fit() -> None:
    line = [[x, 2e-6 * x + 0.3] for x in (1e6, 2e6, 3e6, 5e6)]
    assert eta.fit_line(line, 1.0) == pytest.approx((2e-6, 0.3))
    assert eta.fit_line([*line, [4e6, 50.0]], 1.0) == pytest.approx((2e-6, 0.3))  # an outlier
    assert eta.fit_line([[1e6, 2.0], [1e6, 3.0]], 1.0) == pytest.approx((2.5e-6, 0.0))  # one size
    falling = [[1e6, 3.0], [2e6, 2.0], [3e6, 1.0]]  # rest shrinking with size: a constant
    assert eta.fit_line(falling, 1.0) == pytest.approx((0.0, 2.0))
    assert eta.fit_line([], 1.0) == (1.0, 0.0)  # nothing measured: the prior


def test_a_calibration_file_of_the_old_format_is_read(tmp_path: Path) -> None:
    """History entries were (pixels, rest seconds) pairs; they are dropped, not misread."""
    blobs = LocalBlobStore(tmp_path)
    old = {"a": {"denoise": 0.5, "pixels": 0.5, "samples": 3, "overhead": 9.0, "history": [[1.0, 2.0]]}}
    asyncio.run(blobs.put_bytes("calibration/m.json", json.dumps(old).encode(), "application/json"))
    cal = eta.Calibration(blobs, "m", worker="a")
    mine = asyncio.run(cal.record(eta.Work(100.0, 100.0), denoise_s=1.0, rest_s=1.0))
    assert mine.history == [[100.0, 1.0, 1.0, 100.0, 1.0, 0.0]]
    assert mine.denoise == pytest.approx(0.01)
    assert mine.samples == 4


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
    assert rates.samples == len(tasks) - 1  # every fresh run but the worker's first (cold) one


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
