"""``ltxserve worker --gpus 2`` end to end on CPU (gloo): rank 0 takes the task from the queue and
stores the video, rank 1 follows; SIGTERM drains, then both ranks exit cleanly. That the two
ranks compute the single-process result is shown engine-side in tests/parallel/test_parallel.py."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import httpx
import pytest

from tests.scaleout.cluster import Cluster, Weed


@pytest.mark.timeout(600)  # five ltxserve processes (API, two ranks, migrate, keys) on two shared cores
def test_worker_with_two_ranks_serves_a_task(
    pg_url: str, weed_up: Weed, tiny_model_dir: Path, tmp_path: Path
) -> None:
    cluster = Cluster(
        pg_url,
        weed_up,
        tiny_model_dir,
        tmp_path,
        apis=1,
        workers=1,
        LTXSERVE_S3_PREFIX=f"p{uuid.uuid4().hex[:8]}/",
    )
    worker = cluster.workers[0]
    worker.args += ["--gpus", "2"]
    try:
        cluster.start(timeout=300)
        # CFGScale 4 on the dev preset: the unconditional and conditional passes on different ranks
        task_uuid = cluster.submit(0, CFGScale=4, steps=2, seed=11)
        body = cluster.wait_done(0, task_uuid, timeout=300)
        assert not body.get("errors"), body
        (result,) = body["data"]
        assert result["seed"] == 11
        video = httpx.get(result["videoURL"], timeout=30)
        assert video.status_code == 200
        assert video.content[4:8] == b"ftyp"  # an MP4
        assert worker.signal(signal.SIGTERM, timeout=120) == 0  # rank 1 shut down by rank 0
    finally:
        cluster.stop()
    log = worker.tail(200_000)
    assert "follower ranks started" in log
    assert log.count("transformer split over ranks") == 2  # rank 0 and rank 1, guidance=2
    assert "guidance=2" in log
    assert "leader shut down; follower exits" in log
