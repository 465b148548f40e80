"""A real ``ltxserve serve`` process to attack, and the attacker's tools.

The server is a subprocess on a free port with its own data directory (SQLite, local files,
the tiny random-weight model: it outputs noise), exactly as an operator starts it; keys come
from ``ltxserve keys create``. Attacks use raw sockets and plain WebSocket clients, each from
its own loopback source address (127.0.0.0/8), so the per-address limits of one test do not
touch another's.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from ltxserve.testing import Polling, free_port, video_task  # re-exported for the attack tests

#: Security-test servers start with short deadlines so attacks end quickly (defaults: README).
FAST_LIMITS = {
    "LTXSERVE_HEADER_TIMEOUT_S": "2",
    "LTXSERVE_BODY_TIMEOUT_S": "2",
    "LTXSERVE_WS_AUTH_TIMEOUT_S": "2",
    "LTXSERVE_KEEP_ALIVE_S": "2",
    "LTXSERVE_MAX_CONNECTIONS_PER_CLIENT": "16",
    "LTXSERVE_AUTH_FAILURES_PER_MINUTE": "10",
    "LTXSERVE_AUTH_CACHE_S": "1",
    "LTXSERVE_UPLOAD_PER_MINUTE": "20",
    "LTXSERVE_UPLOAD_BYTES_PER_KEY": str(3 * 1024 * 1024),
}

_sources = itertools.count(2)


def source_address() -> str:
    """A loopback address no other test in this process has used as its client address."""
    n = next(_sources)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@dataclass
class Server(Polling):
    """One ``ltxserve serve`` subprocess."""

    data_dir: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    keys: list[str] = field(default_factory=list)
    args: tuple[str, ...] = ()  # extra ``serve`` options, e.g. ("--no-worker",)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    def cli(self, *args: str) -> str:
        """Run another ``ltxserve`` command against this server's database."""
        done = subprocess.run(
            [sys.executable, "-m", "ltxserve.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def create_key(self, name: str = "attacker") -> str:
        out = self.cli("keys", "create", "--name", name)
        return next(line.strip() for line in out.splitlines() if line.strip().startswith("ltx_"))

    def start(self, timeout: float = 180) -> None:
        self.port = free_port()
        self.env["LTXSERVE_PORT"] = str(self.port)
        if not self.keys:
            self.keys = [self.create_key("tests"), self.create_key("someone else")]
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ltxserve.cli", "serve", *self.args], env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ltxserve serve exited:\n{self.tail()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"ltxserve serve was not ready in {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    # --- the polite client --------------------------------------------------------------------

    def client(self, source: str | None = None, timeout: float = 30) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source or source_address())
        return httpx.Client(base_url=self.url, transport=transport, timeout=timeout)

    def post(
        self, tasks: Any, key: str | None = None, source: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """``POST /v1`` with ``key`` (default: the test key; "" sends no Authorization header)."""
        headers = {"Authorization": f"Bearer {key or self.key}"} if key != "" else {}
        with self.client(source) as client:
            return client.post("/v1", json=tasks, headers=headers, **kwargs)

    def submit(self, key: str | None = None, **fields: Any) -> str:
        task = video_task(**fields)
        reply = self.post([task], key=key)
        assert reply.status_code == 200, reply.text
        return str(task["taskUUID"])

    # --- the attacker's tools -----------------------------------------------------------------

    def raw(self, source: str | None = None, timeout: float = 30) -> socket.socket:
        """A TCP connection to the server from ``source`` (a loopback address)."""
        sock = socket.socket()
        sock.settimeout(timeout)
        sock.bind((source or source_address(), 0))
        sock.connect(("127.0.0.1", self.port))
        return sock

    def ws(self, source: str | None = None, **kwargs: Any) -> ClientConnection:
        """A WebSocket to ``/v1`` from ``source``, not authenticated yet."""
        kwargs.setdefault("max_size", None)
        kwargs.setdefault("open_timeout", 30)
        return ws_connect(self.ws_url, sock=self.raw(source), **kwargs)

    def authed_ws(self, key: str | None = None, source: str | None = None) -> ClientConnection:
        ws = self.ws(source)
        ws.send(json.dumps([{"taskType": "authentication", "apiKey": key or self.key}]))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["data"][0]["taskType"] == "authentication", reply
        return ws


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length framed); (0, {}, b"") when
    the server closed without answering."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closes the connection (EOF or reset) before the socket's timeout;
    any bytes it sends first are read and dropped."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def error_codes(body: bytes | str) -> list[str]:
    return [e["code"] for e in json.loads(body).get("errors", [])]


def server_env(data_dir: Path, model_dir: Path, *, fast: bool = True, **overrides: str) -> dict[str, str]:
    """The server's environment; ``fast``: the short deadlines of :data:`FAST_LIMITS`."""
    env = {
        **os.environ,
        "LTXSERVE_DATA_DIR": str(data_dir),
        "LTXSERVE_MODEL_PATH": str(model_dir),
        "LTXSERVE_MAX_SEQUENCE_LENGTH": "64",
        "LTXSERVE_ENHANCE_MAX_NEW_TOKENS": "8",
        # Longer than a test task: a cancel must reach the worker without waiting for a heartbeat.
        "LTXSERVE_HEARTBEAT_S": "30",
        "LTXSERVE_LEASE_S": "120",
        "LTXSERVE_SWEEP_INTERVAL_S": "0.5",
        "LTXSERVE_PROGRESS_INTERVAL_S": "0",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        **(FAST_LIMITS if fast else {}),
    }
    env.update(overrides)
    return env


@contextlib.contextmanager
def running_server(
    data_dir: Path, model_dir: Path, *, fast: bool = True, args: tuple[str, ...] = (), **overrides: str
) -> Iterator[Server]:
    data_dir.mkdir(parents=True, exist_ok=True)
    server = Server(data_dir, server_env(data_dir, model_dir, fast=fast, **overrides), args=args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
