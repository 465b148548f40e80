"""Scale-out end to end: two API nodes (`serve --no-worker`) and two workers (`ltxserve worker`)
as real processes on PostgreSQL (procrastinate queue, LISTEN/NOTIFY events) and SeaweedFS S3.

One cluster serves the whole module; the tests run in file order and each leaves the cluster
as the next one expects. It starts with four workers (cheaper than restarting killed ones):
the first test kills one, the poison test two, the drain test stops the last.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import ClientConnection, connect

from ltxserve.engine.resume import StepState
from tests.api.conftest import video_task
from tests.api.test_api_durability import decoded
from tests.scaleout.cluster import BUCKET, Cluster, Weed, pg_database, terminate_backends

pytestmark = pytest.mark.slow

# About a second on the tiny model here: long enough to be caught running, short enough for 10.
MEDIUM = {"width": 256, "height": 256, "duration": 1, "fps": 16, "steps": 12}
# A few seconds: a kill or a SIGTERM lands mid-denoise.
SLOW = {"width": 256, "height": 256, "duration": 1, "fps": 16, "steps": 40}


@pytest.fixture(scope="module")
def cluster(
    pg_ok: None, weed: Weed, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    if weed.proc is None or weed.proc.poll() is not None:
        weed.start()
    logs = tmp_path_factory.mktemp("cluster")
    with pg_database() as url:
        c = Cluster(
            url,
            weed,
            tiny_model_dir,
            logs,
            workers=4,
            LTXSERVE_S3_PREFIX=f"c{uuid.uuid4().hex[:8]}/",
            LTXSERVE_SIGTERM_ACTION="drain",  # the preemption test below switches it per worker
        )
        try:
            c.start()
            yield c
        finally:
            c.stop()


def _prefix(c: Cluster) -> str:
    return c.env["LTXSERVE_S3_PREFIX"]


def test_ten_tasks_via_two_nodes_survive_a_worker_sigkill(cluster: Cluster) -> None:
    c = cluster
    # All through node A in one request (ten round trips can outlast a task on a loaded machine);
    # the first one slow enough that the kill lands while it runs.
    uuids = c.submit_many(0, [{"seed": 100 + i, **(SLOW if i == 0 else MEDIUM)} for i in range(10)])
    victim_uuid = uuids[0]
    victim = c.worker_running(victim_uuid)
    assert victim.signal(signal.SIGKILL) == -signal.SIGKILL

    items = [c.wait_done(1, u, timeout=240) for u in uuids]  # all polled through node B
    assert all(not body.get("errors") for body in items), items
    results = [body["data"][0] for body in items]
    assert [r["seed"] for r in results] == [100 + i for i in range(10)]

    # The killed task was taken over after its lease: two attempts, one stored result.
    ((attempts,),) = c.db("SELECT attempts FROM tasks WHERE task_uuid = %s", victim_uuid)
    assert attempts == 2
    rows = c.db("SELECT video_uuid, storage_key FROM results WHERE status = 'success'")
    assert len(rows) == 10 == len({r[0] for r in rows})
    # Each result stored once, under its key: the bucket holds exactly these ten objects.
    expected = {_prefix(c) + key for _, key in rows}
    # (besides the workers' ETA calibration; step checkpoints are deleted when their task ends)
    calibration = _prefix(c) + "calibration/"
    assert {k for k in c.weed.keys(_prefix(c)) if not k.startswith(calibration)} == expected

    for r in results:
        assert r["videoURL"].startswith(c.api_urls[1])
        via_b = httpx.get(r["videoURL"], timeout=30)
        via_a = httpx.get(r["videoURL"].replace(c.api_urls[1], c.api_urls[0]), timeout=30)
        assert via_b.status_code == via_a.status_code == 200
        assert via_b.headers["content-type"] == "video/mp4"
        assert via_a.content == via_b.content
        assert via_b.content[4:8] == b"ftyp"
        obj = c.weed.client().get_object(Bucket="ltxserve", Key=f"{_prefix(c)}videos/{r['videoUUID']}.mp4")
        assert obj["Body"].read() == via_b.content  # the URL serves the stored object, byte for byte
    ranged = httpx.get(results[0]["videoURL"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert ranged.status_code == 206
    assert ranged.headers["content-range"].startswith("bytes 0-99/")
    assert len(ranged.content) == 100
    # Both nodes report the same results (state is in PostgreSQL, not in a node); each names
    # itself in videoURL (its own public base URL).
    via_a = c.post(0, [{"taskType": "getResponse", "taskUUID": victim_uuid}]).json()
    assert json.dumps(via_a).replace(c.api_urls[0], c.api_urls[1]) == json.dumps(items[0])


def _ws(c: Cluster, node: int) -> ClientConnection:
    ws = connect(c.api_urls[node].replace("http", "ws") + "/v1")
    ws.send(json.dumps([{"taskType": "authentication", "apiKey": c.key}]))
    assert json.loads(ws.recv(timeout=30))["data"][0]["taskType"] == "authentication"
    return ws


def _pushes_until_done(ws: ClientConnection, task_uuid: str, timeout: float = 120) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        assert not body.get("errors"), body
        for item in body.get("data", []):
            if item.get("taskUUID") == task_uuid:
                items.append(item)
                if item.get("status") == "success":
                    return items
    raise AssertionError(f"no success push for {task_uuid}: {items}")


def test_websocket_pushes_reach_the_client_on_its_node(cluster: Cluster) -> None:
    """The worker is another process: progress and the result reach node B over LISTEN/NOTIFY."""
    c = cluster
    with _ws(c, 1) as ws:
        task = video_task(**MEDIUM)
        ws.send(json.dumps([task]))
        items = _pushes_until_done(ws, task["taskUUID"])
    assert items[0] == {"taskType": "videoInference", "taskUUID": task["taskUUID"]}  # the ack first
    progress = [i["progress"] for i in items if i.get("status") == "processing"]
    assert progress, items
    assert items[-1]["videoURL"].startswith(c.api_urls[1])


def test_terminated_database_connections_are_survived(cluster: Cluster) -> None:
    c = cluster
    uuids = [c.submit(0, **MEDIUM) for _ in range(4)]
    c.worker_running(uuids[0])
    killed = 0
    for _ in range(3):  # every connection of every process, three times while tasks run
        killed += terminate_backends(c.db_url)
        time.sleep(0.7)
    assert killed >= 6
    for u in uuids:
        assert not c.wait_done(1, u).get("errors")
    assert all(p.alive() for p in c.apis)
    # The event listeners reconnected: a push still reaches a WebSocket client on node A.
    with _ws(c, 0) as ws:
        task = video_task(**MEDIUM)
        ws.send(json.dumps([task]))
        assert _pushes_until_done(ws, task["taskUUID"])[-1]["status"] == "success"
    assert c.db("SELECT count(*) FROM tasks WHERE status <> 'success'") == [(0,)]


def test_object_store_outage_is_survived(cluster: Cluster) -> None:
    c = cluster
    c.weed.stop()
    try:
        task_uuid = c.submit(0, **MEDIUM)
        c.wait_db("SELECT 1 FROM tasks WHERE task_uuid = %s AND status = 'running'", task_uuid)
        time.sleep(3)  # generated, encoded, and retrying the put
        assert c.db("SELECT status FROM tasks WHERE task_uuid = %s", task_uuid) == [("running",)]
        ready = httpx.get(f"{c.api_urls[0]}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["storage"].startswith("error")
    finally:
        c.weed.start()
    body = c.wait_done(1, task_uuid)
    assert not body.get("errors"), body
    ((attempts,),) = c.db("SELECT attempts FROM tasks WHERE task_uuid = %s", task_uuid)
    assert attempts == 1  # waited out the outage inside the attempt
    assert httpx.get(body["data"][0]["videoURL"], timeout=30).status_code == 200


def test_metrics_on_api_nodes_and_workers(cluster: Cluster) -> None:
    c = cluster
    ready = httpx.get(f"{c.api_urls[0]}/readyz", timeout=30).json()
    assert set(ready["checks"]) == {"store", "storage"}  # an API node: no model to wait for
    api = httpx.get(f"{c.api_urls[0]}/metrics", timeout=30)
    assert api.status_code == 200
    assert "ltxserve_queue_depth 0.0" in api.text
    assert "ltxserve_tasks_running 0.0" in api.text
    assert "ltxserve_queue_oldest_seconds 0.0" in api.text
    alive = [url for url, w in zip(c.metrics_urls, c.workers, strict=True) if w.alive()]
    text = httpx.get(alive[0], timeout=30).text
    for stage in ("queue_wait", "generate", "encode", "store", "total"):
        count = _sample(text, f'ltxserve_stage_seconds_count{{stage="{stage}"}}')
        assert count >= 1, stage
    assert _sample(text, 'ltxserve_results_total{status="success"}') >= 1
    assert _sample(text, "ltxserve_worker_busy") == 0
    assert _sample(text, "ltxserve_worker_up") == 1


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


def test_a_task_that_kills_its_workers_ends_as_error(cluster: Cluster) -> None:
    """LTXSERVE_MAX_ATTEMPTS=2: killed on both attempts, it is given up, not retried forever."""
    c = cluster
    task_uuid = c.submit(0, **SLOW)
    for attempt in (1, 2):
        worker = c.worker_running(task_uuid, attempt=attempt)
        assert worker.signal(signal.SIGKILL) == -signal.SIGKILL
    body = c.wait_done(1, task_uuid, timeout=60)  # a sweeper, or the last worker handed it, ends it
    (error,) = body["errors"]
    assert (error["code"], error["status"]) == ("inferenceError", "error")
    assert "2 times" in error["message"]
    assert c.db("SELECT status, attempts FROM tasks WHERE task_uuid = %s", task_uuid) == [("error", 2)]


def test_sigterm_drains_the_task_in_hand(cluster: Cluster) -> None:
    c = cluster
    assert sum(w.alive() for w in c.workers) == 1  # nobody else could finish it
    task_uuid = c.submit(0, **SLOW)
    worker = c.worker_running(task_uuid)
    c.wait_db("SELECT 1 FROM tasks WHERE task_uuid = %s AND progress > 0", task_uuid)
    assert worker.signal(signal.SIGTERM) == 0
    assert c.db("SELECT status, attempts FROM tasks WHERE task_uuid = %s", task_uuid) == [("success", 1)]


def _checkpoint(c: Cluster, task_id: str) -> StepState | None:
    """The newest step checkpoint of ``task_id`` in S3 (highest attempt number)."""
    keys = c.weed.keys(f"{_prefix(c)}checkpoints/{task_id}/")
    if not keys:
        return None
    newest = max(keys, key=lambda k: int(k.rsplit("/", 1)[1].split(".")[0]))
    body = c.weed.client().get_object(Bucket=BUCKET, Key=newest)["Body"].read()
    return StepState.from_bytes(body)


def _wait_checkpoint(c: Cluster, task_id: str, min_progress: int) -> StepState:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = _checkpoint(c, task_id)
        if state is not None and state.progress >= min_progress:
            return state
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at {min_progress} steps")


@pytest.mark.timeout(600)  # worker starts
def test_killed_then_preempted_task_resumes_on_other_workers(cluster: Cluster) -> None:
    """Checkpoints in S3: a worker SIGKILLed mid-denoise, then its successor preempted (SIGTERM:
    checkpoint, give back at once); each next worker resumes, and the video equals an
    uninterrupted one with the same seed."""
    c = cluster
    assert not any(w.alive() for w in c.workers)  # the drain test stopped the last one
    for w in c.workers[:2]:
        w.env.update(LTXSERVE_SIGTERM_ACTION="checkpoint", LTXSERVE_CHECKPOINT_EVERY_STEPS="1")
        w.start()
    c.wait_ready()
    params = {**SLOW, "seed": 21}
    ref = c.wait_done(1, c.submit(0, **params))["data"][0]

    task_uuid = c.submit(0, **params)
    first = c.worker_running(task_uuid)
    ((task_id,),) = c.db("SELECT id FROM tasks WHERE task_uuid = %s", task_uuid)
    killed_at = _wait_checkpoint(c, task_id, 10)
    assert first.signal(signal.SIGKILL) == -signal.SIGKILL
    second = c.worker_running(task_uuid, attempt=2)  # after the lease ran out
    assert second is not first
    _wait_checkpoint(c, task_id, killed_at.progress + 10)
    assert second.signal(signal.SIGTERM) == 0  # gave the task back rather than finishing it
    assert c.db("SELECT status, attempts FROM tasks WHERE id = %s", task_id) == [("queued", 1)]
    first.start()  # the only worker now
    item = c.wait_done(1, task_uuid, timeout=180)["data"][0]

    got = decoded(httpx.get(item["videoURL"], timeout=30).content)
    want = decoded(httpx.get(ref["videoURL"], timeout=30).content)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert not c.weed.keys(f"{_prefix(c)}checkpoints/")  # deleted with the task
    log = first.log.read_text()
    assert '"resuming from a checkpoint"' in log or "resuming from a checkpoint" in log
