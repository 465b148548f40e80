"""Runware's official Python SDKs, unmodified, against a live ltxserve.

``runware`` 0.5.24 and ``runware-sdk`` 1.8.0 both install the import name ``runware``, so each
gets its own virtual environment, created once under ``<repo>/.cache/sdk-venvs/`` (ignored by
git) and reused while it holds the pinned version. Client scripts (``clients/``) run in those
environments as subprocesses and answer with one JSON document on stdout.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server

REPO = Path(__file__).resolve().parents[2]
VENV_ROOT = REPO / ".cache" / "sdk-venvs"
CLIENTS = Path(__file__).resolve().parent / "clients"

#: Short network timeouts, so an unreachable index fails in seconds rather than minutes.
PIP_OPTIONS = ("--disable-pip-version-check", "--timeout", "20", "--retries", "2")
#: pip output that means "the package index could not be reached", not "the install is broken".
OFFLINE_MARKERS = (
    "Could not find a version that satisfies the requirement",
    "No matching distribution found",
    "NewConnectionError",
    "ConnectTimeoutError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Max retries exceeded",
)


@dataclass(frozen=True)
class Sdk:
    """One pinned SDK: its distribution, version and client script."""

    dist: str
    version: str
    script: str

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"

    @property
    def venv(self) -> Path:
        return VENV_ROOT / f"{self.dist}-{self.version}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


RUNWARE_0524 = Sdk("runware", "0.5.24", "runware_0524.py")
RUNWARE_SDK_180 = Sdk("runware-sdk", "1.8.0", "runware_sdk_180.py")


@dataclass(frozen=True)
class Client:
    """An SDK with the transport it is driven over."""

    id: str
    sdk: Sdk
    transport: str  # "websocket" | "rest"


CLIENT_CASES = (
    Client("runware-0.5.24-websocket", RUNWARE_0524, "websocket"),
    Client("runware-sdk-1.8.0-rest", RUNWARE_SDK_180, "rest"),
    Client("runware-sdk-1.8.0-websocket", RUNWARE_SDK_180, "websocket"),
)


def _installed_version(sdk: Sdk) -> str | None:
    """The version of ``sdk.dist`` the cached venv holds, or None if it is missing or broken."""
    if not sdk.python.exists():
        return None
    probe = subprocess.run(
        [str(sdk.python), "-c", f"import importlib.metadata as m; print(m.version({sdk.dist!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def _build_venv(sdk: Sdk) -> None:
    """A fresh venv holding only the pinned SDK and its dependencies (never torch)."""
    shutil.rmtree(sdk.venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(sdk.venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(sdk.python), "-m", "pip", "install", "--quiet", *PIP_OPTIONS, sdk.requirement],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode == 0:
        return
    shutil.rmtree(sdk.venv, ignore_errors=True)
    output = install.stdout + install.stderr
    if any(marker in output for marker in OFFLINE_MARKERS):
        pytest.skip(f"cannot install {sdk.requirement}: the package index is unreachable\n{output[-2000:]}")
    pytest.fail(f"pip install {sdk.requirement} failed:\n{output[-4000:]}")


def ensure_sdk_venv(sdk: Sdk) -> Path:
    """The cached venv of ``sdk``, created (under a file lock: test runs may overlap) when it is
    missing or holds another version. Returns its python."""
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / f"{sdk.venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _installed_version(sdk) != sdk.version:
                started = time.monotonic()
                _build_venv(sdk)
                if _installed_version(sdk) != sdk.version:
                    pytest.fail(f"{sdk.venv} does not hold {sdk.requirement} after installing it")
                print(f"created {sdk.venv} in {time.monotonic() - started:.1f}s", file=sys.stderr)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return sdk.python


@pytest.fixture(scope="session")
def sdk_pythons() -> dict[Sdk, Path]:
    """Both SDK venvs, ready (created on the first run, reused after)."""
    return {sdk: ensure_sdk_venv(sdk) for sdk in (RUNWARE_0524, RUNWARE_SDK_180)}


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    """A real ltxserve (uvicorn, REST + WebSocket) running the tiny model."""
    settings = server_settings(tmp_path_factory.mktemp("sdk-server"), model_path=engine.settings.model_path)
    yield from start_server(settings, engine)


@pytest.fixture(scope="module")
def first_frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PNG for imageUpload: a gradient, so a decoded copy can be compared pixel for pixel."""
    from PIL import Image

    path = tmp_path_factory.mktemp("sdk-inputs") / "first-frame.png"
    image = Image.new("RGB", (128, 128))
    image.putdata([(x * 2, y * 2, 128) for y in range(128) for x in range(128)])
    image.save(path)
    return path


#: Every scenario starts from this request (tiny, for speed).
BASE_REQUEST: dict[str, Any] = {
    "model": "lightricks:ltx@2",
    "positivePrompt": "a red paper boat drifting on a calm pond",
    "width": 128,
    "height": 128,
    "duration": 1,
    "fps": 8,
    "steps": 2,
}
BATCH_SEED = 424242
INVALID_WIDTH = 130


@dataclass
class ClientRun:
    """What one client script reported, with what is needed to check it."""

    client: Client
    server: LiveServer
    document: dict[str, Any]
    out_dir: Path
    image: Path
    seconds: float

    def scenario(self, name: str) -> dict[str, Any]:
        outcome: dict[str, Any] = self.document["scenarios"][name]
        if "exception" in outcome:
            exc = outcome["exception"]
            pytest.fail(
                f"{self.client.id} raised in {name}: {exc['type']}: {exc['message']}\n{exc['traceback']}"
            )
        return outcome


def run_client(
    client: Client,
    python: Path,
    server: LiveServer,
    image: Path,
    out_dir: Path,
    timeout: float = 240,
    request: dict[str, Any] | None = None,
    only: tuple[str, ...] = (),
) -> ClientRun:
    """Run ``client``'s scenarios (``only``: a subset; runware-sdk's script honours it) from
    ``request`` (default ``BASE_REQUEST``)."""
    document, seconds = run_client_script(
        client, python, server.settings.port, server.key, image, out_dir, timeout, request, only
    )
    return ClientRun(client, server, document, out_dir, image, seconds)


def run_client_script(
    client: Client,
    python: Path,
    port: int,
    key: str,
    image: Path,
    out_dir: Path,
    timeout: float = 240,
    request: dict[str, Any] | None = None,
    only: tuple[str, ...] = (),
) -> tuple[dict[str, Any], float]:
    """Run ``client``'s script against the server on 127.0.0.1:``port`` with API key ``key``
    (any server: in-process, a subprocess or a container); returns its JSON document and the
    seconds it took."""
    scheme = "http" if client.transport == "rest" else "ws"
    config = {
        "url": f"{scheme}://127.0.0.1:{port}/v1",
        "transport": client.transport,
        "image": str(image),
        "out_dir": str(out_dir),
        "request": request or BASE_REQUEST,
        "only": list(only),
        "seed": BATCH_SEED,
        "invalid_width": INVALID_WIDTH,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        RUNWARE_API_KEY=key,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        # runware 0.5.24: wait 3 s (not 30) for each poll's answer, 0.5 s between polls, and
        # give up after 40 polls instead of 480 so a broken server fails the test in minutes.
        RUNWARE_VIDEO_INITIAL_TIMEOUT="3000",
        RUNWARE_VIDEO_POLLING_DELAY="500",
        RUNWARE_MAX_POLLS="40",
        RUNWARE_MAX_POLLS_VIDEO_GENERATION="40",
    )
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(python), str(CLIENTS / client.sdk.script), json.dumps(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=out_dir,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"{client.id} did not finish within {timeout:.0f}s\nstderr:\n{(stderr or '')[-6000:]}")
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        pytest.fail(f"{client.id} exited with {proc.returncode}\nstderr:\n{proc.stderr[-6000:]}")
    try:
        document = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"{client.id} printed no JSON document:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return document, seconds
