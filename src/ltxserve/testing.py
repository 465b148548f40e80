"""Helpers shared by the tests and the benchmarks: a live server in a thread, a task body, an RSS sampler.

One importable place, so ``bench/`` never imports a ``conftest`` and no test loads a bench script
by file path. Nothing here is used by the service itself.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ltxserve.api.app import create_app
from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob
from ltxserve.protocol import ValidationContext
from ltxserve.runtime import Runtime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Polling:
    """``wait`` for any client with ``post(tasks, key=...)`` (an in-process server, a subprocess)."""

    def post(self, tasks: Any, key: str | None = None, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    def wait(self, task_uuid: str, key: str | None = None, timeout: float = 120) -> dict[str, Any]:
        """Poll getResponse until every item is finished (or an error arrives)."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.post([{"taskType": "getResponse", "taskUUID": task_uuid}], key=key).json()
            items = body.get("data", [])
            if body.get("errors") or (items and all(i.get("status") == "success" for i in items)):
                return body
            time.sleep(0.1)
        raise AssertionError(f"task {task_uuid} did not finish in {timeout} s: {body}")


@dataclass
class LiveServer(Polling):
    url: str
    ws_url: str
    settings: Settings
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    key: str
    other_key: str
    secret: str = ""  # the webhook signing secret of ``key``

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (for direct store access in tests)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def post(self, tasks: Any, key: str | None = None, **kwargs: Any) -> httpx.Response:
        """REST call with ``key`` (default: the test key; "" sends no Authorization header)."""
        headers = {"Authorization": f"Bearer {key or self.key}"} if key != "" else {}
        return httpx.post(f"{self.url}/v1", json=tasks, headers=headers, timeout=60, **kwargs)

    def submit(self, key: str | None = None, **fields: Any) -> str:
        """Submit a tiny videoInference (fields override the defaults); returns its taskUUID."""
        task = video_task(**fields)
        reply = self.post([task], key=key)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]}
        return str(task["taskUUID"])


def video_task(**fields: Any) -> dict[str, Any]:
    """A videoInference the tiny model finishes in well under a second."""
    task: dict[str, Any] = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "lightricks:ltx@2",
        "positivePrompt": "a red kite over green hills",
        "width": 128,
        "height": 128,
        "duration": 1,
        "fps": 8,
        "steps": 2,
        "CFGScale": 1,
        "settings": {"enhancePrompt": False},
    }
    task.update(fields)
    return {k: v for k, v in task.items() if v is not None}


def start_server(
    settings: Settings, engine: Engine | None, api_settings: Settings | None = None
) -> Iterator[LiveServer]:
    """A live server on ``settings``; ``api_settings``: its API validates as a node configured with
    these (an API node whose model settings differ from its worker's)."""
    runtime = Runtime.build(settings, engine=engine)
    app = create_app(runtime)
    if api_settings is not None:
        app.state.validation = ValidationContext.from_settings(api_settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_config=None, ws_max_size=4 * settings.max_body_bytes
    )
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    base = f"http://127.0.0.1:{settings.port}"
    while httpx.get(f"{base}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not become ready")
        time.sleep(0.05)
    live = LiveServer(base, f"ws://127.0.0.1:{settings.port}/v1", settings, runtime, loops[0], "", "")
    _, live.key, live.secret = live.call(runtime.store.keys.create("tests"))
    live.other_key = live.call(runtime.store.keys.create("someone else"))[1]
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def server_settings(tmp: Path, **overrides: Any) -> Settings:
    port = free_port()
    values: dict[str, Any] = {
        "data_dir": tmp,
        "port": port,
        "max_sequence_length": 64,
        "enhance_max_new_tokens": 8,
        "heartbeat_s": 0.5,
        "progress_interval_s": 0.0,
        "sweep_interval_s": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


class PeakRSS:
    """Samples this process's resident set size in a thread; ``peak`` is the largest seen."""

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.baseline = self._proc.memory_info().rss
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta(self) -> int:
        return self.peak - self.baseline


@contextmanager
def diffusers_recipe(engine: Engine, job: GenerationJob) -> Iterator[dict[str, Any]]:
    """The kwargs a diffusers user following Lightricks' recipe passes to ``engine.t2v`` by hand for
    ``job`` (the reference side of the engine benchmarks): the preset's guidance kwargs and sigmas,
    with a scheduler that does not shift given sigmas again (as diffusers' LTX-2 docs show), and
    Lightricks' default negative prompt under CFG. The pipeline's scheduler is restored on exit."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from ltxserve.engine.engine import negative_prompt

    # Requests' negative prompts are the same across jobs of one batch shape in the benchmarks.
    sampling = engine.preset.sampling(job.steps, job.guidance)
    kwargs: dict[str, Any] = {"negative_prompt": negative_prompt(job, sampling.cfg), **sampling.kwargs}
    original = engine.t2v.scheduler
    if sampling.sigmas is not None:
        kwargs["sigmas"] = list(sampling.sigmas)
        engine.t2v.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            original.config, use_dynamic_shifting=False, shift=1.0, shift_terminal=None
        )
    try:
        yield kwargs
    finally:
        engine.t2v.scheduler = original
