"""The built images, run as the compose topology: API container + worker container + PostgreSQL +
S3, and one task through Runware's official SDK (``runware`` 0.5.24) against the API container.

Opt-in (``LTXSERVE_IMAGE_TEST=1``): it builds both images with podman (daemonless; vfs storage and
chroot isolation work inside an unprivileged build box), which takes many minutes and GBs.
Where no container registry is reachable, point ``LTXSERVE_IMAGE_BASE`` at a local base image with
python3 + venv (``scripts/debian-base-image.sh`` makes one from Debian packages with debootstrap)
and ``LTXSERVE_IMAGE_TORCH`` at a pip spec for torch (e.g. ``--find-links http://127.0.0.1:PORT/
torch==2.13.0+cpu``). PostgreSQL and SeaweedFS run on the host (the machine's server and the
``weed`` binary, as in the other scale-out tests); the containers use the host network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.scaleout.cluster import Weed, free_port, pg_database
from tests.sdk.conftest import RUNWARE_0524, ensure_sdk_venv

ROOT = Path(__file__).resolve().parents[2]
PODMAN_GLOBAL = ["--storage-driver", "vfs"]
#: What `podman run` needs inside a build box (measured here: crun refuses cgroup v1/v2 hybrid mode,
#: so Debian's runc; the default rlimits are above this box's hard limits; healthcheck timers need
#: systemd). The test waits on /readyz itself.
RUN_FLAGS = [
    "--network=host",
    "--runtime=runc",
    "--no-healthcheck",
    "--ulimit=nofile=20000:20000",
    "--ulimit=nproc=1024:1024",
]

pytestmark = [
    pytest.mark.optional,  # needs podman, GBs of disk and a base image: not part of `make test`
    pytest.mark.skipif(os.environ.get("LTXSERVE_IMAGE_TEST") != "1", reason="set LTXSERVE_IMAGE_TEST=1"),
]


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *PODMAN_GLOBAL, *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def build(dockerfile: str, tag: str) -> None:
    args = ["build", "--isolation", "chroot", "--network", "host", "--format", "docker", "-t", tag]
    if base := os.environ.get("LTXSERVE_IMAGE_BASE"):
        args += ["--build-arg", f"BASE={base}"]
    if torch := os.environ.get("LTXSERVE_IMAGE_TORCH"):
        args += ["--build-arg", f"TORCH_INSTALL={torch}"]
    out = subprocess.run(
        ["podman", *PODMAN_GLOBAL, *args, "-f", f"deploy/{dockerfile}", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman)")
    tags = {"api": "localhost/ltxserve-api:test", "worker": "localhost/ltxserve-worker:test"}
    build("Dockerfile.api", tags["api"])
    build("Dockerfile.worker", tags["worker"])
    return tags


@pytest.fixture
def stack(images: dict[str, str], weed_up: Weed, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """migrate (one-shot), API and worker containers on the host network; yields the API's URL
    and the database URL."""
    port, metrics_port = free_port(), free_port()
    with pg_database("ltxserve_img") as pg:
        env = {
            "LTXSERVE_DATABASE_URL": pg,
            **weed_up.settings_env(),
            "LTXSERVE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "LTXSERVE_AUTO_MIGRATE": "false",
            "LTXSERVE_PORT": str(port),
            "LTXSERVE_METRICS_PORT": str(metrics_port),
            "LTXSERVE_DEVICE": "cpu",
        }
        flags = [f"--env={k}={v}" for k, v in env.items()]
        podman("run", "--rm", *RUN_FLAGS, *flags, images["api"], "ltxserve", "db", "upgrade", timeout=1200)
        names = {role: f"ltxserve-{role}-{uuid.uuid4().hex[:8]}" for role in ("api", "worker")}
        try:
            for role in ("api", "worker"):
                podman("run", "-d", "--name", names[role], *RUN_FLAGS, *flags, images[role], timeout=1200)
            yield f"http://127.0.0.1:{port}", pg
        finally:
            for name in names.values():
                logs = podman("logs", name, check=False)
                (tmp_path / f"{name}.log").write_text(logs.stdout + logs.stderr)
                podman("rm", "-f", "-t", "30", name, check=False)


def wait_ready(url: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise AssertionError(f"{url} never became ready")


SDK_SCRIPT = """
import asyncio, json, sys, urllib.request
from runware import IVideoInference, ISettings, Runware

async def main():
    runware = Runware(api_key=sys.argv[2], url=sys.argv[1].replace("http", "ws") + "/v1")
    await runware.connect()
    ack = await runware.videoInference(requestVideo=IVideoInference(
        model="lightricks:ltx@2", positivePrompt="a paper boat", width=128, height=128,
        duration=1, fps=8, steps=2, settings=ISettings(enhancePrompt=False)))
    videos = await runware.getResponse(taskUUID=ack.taskUUID)
    data = urllib.request.urlopen(videos[0].videoURL).read()
    print(json.dumps({"url": videos[0].videoURL, "bytes": len(data), "head": data[4:8].decode()}))

asyncio.run(main())
"""


def test_one_task_through_the_built_stack(stack: tuple[str, str], images: dict[str, str]) -> None:
    url, database = stack
    wait_ready(url)
    inspect = json.loads(podman("image", "inspect", images["api"]).stdout)[0]
    assert inspect["Config"]["User"] not in ("", "root", "0")
    assert inspect["Config"].get("Healthcheck"), "HEALTHCHECK kept (--format docker)"
    # the key goes into the stack's database (the host's CLI; `podman exec` meets the same rlimits)
    key_out = subprocess.run(
        [sys.executable, "-m", "ltxserve.cli", "keys", "create", "--name", "images"],
        env={**os.environ, "LTXSERVE_DATABASE_URL": database},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    key = next(w for w in key_out.split() if w.startswith("ltx_"))
    python = ensure_sdk_venv(RUNWARE_0524)
    run = subprocess.run(
        [str(python), "-c", SDK_SCRIPT, url, key], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["url"].startswith(f"{url}/files/videos/")
    assert result["head"] == "ftyp"  # an MP4 from the worker container, via S3, through the API
    assert result["bytes"] > 1000
