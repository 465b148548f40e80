"""Nothing is lost: `ltxserve serve` as a real process, killed and restarted mid-task."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from ltxserve.engine.resume import StepState
from tests.api.conftest import free_port, video_task

pytestmark = pytest.mark.slow

# Slow enough on the tiny model that a kill lands mid-task: ~0.1 s per step at this size.
SLOW = {"width": 512, "height": 512, "duration": 2, "fps": 24, "steps": 60}


class ServerProcess:
    def __init__(self, data_dir: Path, model_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "LTXSERVE_DATA_DIR": str(data_dir),
            "LTXSERVE_MODEL_PATH": str(model_dir),
            "LTXSERVE_PORT": str(self.port),
            "LTXSERVE_MAX_SEQUENCE_LENGTH": "64",
            "LTXSERVE_HEARTBEAT_S": "0.5",
            "LTXSERVE_PROGRESS_INTERVAL_S": "0",
            "HF_HUB_OFFLINE": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ltxserve.cli", "serve"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not become ready:\n" + self.log.read_text()[-3000:])

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def post(self, tasks: Any, key: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1", json=tasks, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "ltxserve.db") as conn:
            return conn.execute(sql, args).fetchall()

    def wait_db(self, sql: str, *args: Any, timeout: float = 90) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.db(sql, *args)
            if rows:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for: {sql}")

    def wait_done(self, task_uuid: str, key: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.post([{"taskType": "getResponse", "taskUUID": task_uuid}], key).json()
            items = body.get("data", [])
            if body.get("errors") or (items and all(i["status"] == "success" for i in items)):
                return body  # type: ignore[no-any-return]
            time.sleep(0.2)
        raise AssertionError(f"{task_uuid} did not finish")


def create_key(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "ltxserve.cli", "keys", "create", "--name", "durability"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.strip() for line in out.splitlines() if line.strip().startswith("ltx_"))


@pytest.fixture
def server(tmp_path: Path, tiny_model_dir: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path, tiny_model_dir, LTXSERVE_BATCH_RESULTS="false", LTXSERVE_MAX_ATTEMPTS="2")
    try:
        yield srv
    finally:
        srv.stop()


def test_sigkill_mid_task_then_restart_completes(server: ServerProcess) -> None:
    key = create_key(server.env)
    server.start()
    task = video_task(numberResults=2, seed=5, **SLOW)
    assert server.post([task], key).status_code == 200
    # Kill once the first result is stored and the second is being generated.
    (first,) = server.wait_db(
        "SELECT r.video_uuid FROM results r JOIN tasks t ON r.task_id = t.id "
        "WHERE t.task_uuid = ? AND r.status = 'success'",
        task["taskUUID"],
    )
    time.sleep(0.3)
    assert server.signal(signal.SIGKILL) == -signal.SIGKILL
    assert server.db("SELECT status FROM tasks WHERE task_uuid = ?", task["taskUUID"]) == [("running",)]

    server.start()
    body = server.wait_done(task["taskUUID"], key)
    items = body["data"]
    assert [i["seed"] for i in items] == [5, 6]
    assert items[0]["videoUUID"] == first[0]  # the finished result was kept, not redone
    assert httpx.get(items[1]["videoURL"]).status_code == 200
    assert server.db("SELECT attempts FROM tasks WHERE task_uuid = ?", task["taskUUID"]) == [(2,)]
    server.signal(signal.SIGTERM)


def test_task_that_keeps_killing_its_server_ends_as_error(server: ServerProcess) -> None:
    key = create_key(server.env)
    task = video_task(**SLOW)
    for attempt in (1, 2):
        server.start()
        if attempt == 1:
            assert server.post([task], key).status_code == 200
        server.wait_db(
            "SELECT 1 FROM tasks WHERE task_uuid = ? AND status = 'running' AND attempts = ?",
            task["taskUUID"],
            attempt,
        )
        server.signal(signal.SIGKILL)
    server.start()  # LTXSERVE_MAX_ATTEMPTS=2: the task is given up, not tried a third time
    body = server.wait_done(task["taskUUID"], key)
    (error,) = body["errors"]
    assert error["code"] == "inferenceError"
    assert error["status"] == "error"
    assert "2 times" in error["message"]
    server.signal(signal.SIGTERM)


def test_sigterm_drains_the_running_task(server: ServerProcess) -> None:
    server.env["LTXSERVE_SIGTERM_ACTION"] = "drain"
    key = create_key(server.env)
    server.start()
    task = video_task(**{**SLOW, "steps": 20})
    assert server.post([task], key).status_code == 200
    server.wait_db("SELECT 1 FROM tasks WHERE task_uuid = ? AND progress > 0", task["taskUUID"])
    # uvicorn re-raises SIGTERM after a clean shutdown, so the exit status is the signal's.
    assert server.signal(signal.SIGTERM) in (0, -signal.SIGTERM)
    # The task finished before the process exited: done in one attempt.
    assert server.db("SELECT status, attempts FROM tasks WHERE task_uuid = ?", task["taskUUID"]) == [
        ("success", 1)
    ]


# --- step checkpoints: killed anywhere, the task resumes to the very same video ------------------


def latest_state(server: ServerProcess, task_id: str) -> StepState | None:
    """The newest checkpoint the server wrote for ``task_id`` (puts are atomic renames)."""
    files = sorted(
        (server.data_dir / "files" / "checkpoints" / task_id).glob("*.pt"), key=lambda p: p.stat().st_mtime
    )
    return StepState.from_bytes(files[-1].read_bytes()) if files else None


def wait_state(server: ServerProcess, task_id: str, ok: Callable[[StepState], bool]) -> StepState:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = latest_state(server, task_id)
        if state is not None and ok(state):
            return state
        time.sleep(0.02)
    raise AssertionError("no such checkpoint appeared:\n" + server.log.read_text()[-3000:])


def resumed_at(server: ServerProcess) -> list[int]:
    """Progress (steps) of each "resuming from a checkpoint" in the server's JSON log."""
    out = []
    for line in server.log.read_text().splitlines():
        if line.startswith("{") and '"resuming from a checkpoint"' in line:
            out.append(int(json.loads(line)["progress"]))
    return out


def decoded(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Every video frame and audio sample of an encoded file."""
    with av.open(io.BytesIO(data), "r") as box:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in box.decode(video=0)])
    with av.open(io.BytesIO(data), "r") as box:
        audio = np.concatenate([f.to_ndarray() for f in box.decode(audio=0)], axis=-1)
    return frames, audio


@pytest.mark.timeout(600)  # four server starts
def test_killed_and_preempted_task_resumes_to_the_same_video(tmp_path: Path, tiny_model_dir: Path) -> None:
    """One task, interrupted three times: SIGTERM (preemption: checkpoint and give back) mid-denoise,
    SIGKILL later mid-denoise, SIGKILL during decode/encode (a kill before the first checkpoint
    restarts from step 0: ``test_task_that_keeps_killing_its_server_ends_as_error``).
    Its video and audio equal those of an uninterrupted task with the same seed, and each resume
    starts at the newest checkpoint (at most one interval, here one step, is lost)."""
    server = ServerProcess(
        tmp_path,
        tiny_model_dir,
        LTXSERVE_MAX_ATTEMPTS="5",
        LTXSERVE_CHECKPOINT_EVERY_STEPS="1",
        LTXSERVE_LOG_FORMAT="json",
    )
    try:
        key = create_key(server.env)
        server.start()
        params = {**SLOW, "steps": 30, "seed": 11}
        reference = video_task(**params)
        assert server.post([reference], key).status_code == 200
        (ref,) = server.wait_done(reference["taskUUID"], key)["data"]

        task = video_task(**params)
        assert server.post([task], key).status_code == 200
        ((task_id,),) = server.wait_db("SELECT id FROM tasks WHERE task_uuid = ?", task["taskUUID"])
        wait_state(server, task_id, lambda s: s.progress >= 8)
        assert server.signal(signal.SIGTERM) in (0, -signal.SIGTERM)  # 1. preemption notice
        # given back at once, not finished, and the preemption is not counted as a failed attempt
        assert server.db("SELECT status, attempts FROM tasks WHERE id = ?", task_id) == [("queued", 0)]
        preempted = latest_state(server, task_id)
        assert preempted is not None

        server.start()
        later = wait_state(server, task_id, lambda s: s.progress >= preempted.progress + 8)
        assert server.signal(signal.SIGKILL) == -signal.SIGKILL  # 2. mid-denoise
        last = latest_state(server, task_id)
        assert last is not None

        server.start()
        wait_state(server, task_id, lambda s: s.finished)
        assert server.signal(signal.SIGKILL) == -signal.SIGKILL  # 3. during decode/encode
        assert server.db("SELECT status FROM tasks WHERE id = ?", task_id) == [("running",)]

        server.start()
        (item,) = server.wait_done(task["taskUUID"], key)["data"]
        # each attempt started where the one before left its newest checkpoint
        assert resumed_at(server)[-3:] == [preempted.progress, last.progress, 30]
        assert later.progress <= last.progress
        got = decoded(httpx.get(item["videoURL"]).content)
        want = decoded(httpx.get(ref["videoURL"]).content)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        # the checkpoints went with the task
        assert not list((server.data_dir / "files" / "checkpoints" / task_id).glob("*.pt"))
        server.signal(signal.SIGTERM)
    finally:
        server.stop()
