"""The built images, run as the compose topology: a one-shot migration, the API container and the
worker container (tiny random-weight model: its videos are noise) against PostgreSQL and S3, and
one task through Runware's official SDK (``runware-sdk`` 1.8.0, WebSocket) against the API
container; the video comes back from the worker container through S3 and the API.

Opt-in (``LTXSERVE_IMAGE_TEST=1``): it builds both images with podman (daemonless), which takes
minutes and GBs. The commands, the knobs and the figures measured here are in docs/operations.md:

- ``PODMAN_STORAGE_DRIVER`` (default ``overlay``: native overlayfs, no copy per layer; ``vfs``
  where overlay mounts are refused, at the price of a full rootfs copy per layer);
- ``LTXSERVE_IMAGE_BASE``: a base image with python3 + venv where no container registry is
  reachable (``scripts/debian-base-image.sh`` makes one from Debian packages with debootstrap);
- ``LTXSERVE_IMAGE_TORCH``: the pip spec for torch (e.g. ``--find-links /wheels torch==2.13.0+cpu``)
  and ``LTXSERVE_IMAGE_WHEELS``: a host folder mounted at ``/wheels`` during the build.

PostgreSQL and SeaweedFS run on the host (the machine's server and the ``weed`` binary, as in the
other scale-out tests); the containers use the host network, as compose's would use its own.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.scaleout.cluster import Weed, free_port, pg_database
from tests.sdk.conftest import RUNWARE_SDK_180, Client, ensure_sdk_venv, run_client_script

ROOT = Path(__file__).resolve().parents[2]
PODMAN_GLOBAL = ["--storage-driver", os.environ.get("PODMAN_STORAGE_DRIVER", "overlay")]
TAGS = {"api": "localhost/ltxserve-api:test", "worker": "localhost/ltxserve-worker:test"}
MODEL_IN_CONTAINER = "/models/tiny-ltx2"


def ulimit_flags() -> list[str]:
    """podman's default rlimits (nofile 1048576, nproc unlimited-ish) are above what a process
    without CAP_SYS_RESOURCE may set (measured in a build box: ``error setting rlimit type 7:
    operation not permitted``): ask for the host's own hard limit instead, and a modest nproc."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)
    return [f"--ulimit=nofile={nofile}:{nofile}", "--ulimit=nproc=4096:4096"]


#: The containers of the topology (and the builds' RUN steps) share the host network: PostgreSQL,
#: SeaweedFS and the package index are reached as from the host.
RUN_FLAGS = ["--network=host", *ulimit_flags()]

pytestmark = [
    pytest.mark.optional,  # needs podman, GBs of disk and a base image: not part of `make test`
    pytest.mark.skipif(os.environ.get("LTXSERVE_IMAGE_TEST") != "1", reason="set LTXSERVE_IMAGE_TEST=1"),
    pytest.mark.timeout(7200),  # two image builds on a shared 2-core machine
]


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        out = subprocess.run(
            ["podman", *PODMAN_GLOBAL, *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"podman {' '.join(args[:3])} did not finish in {timeout:.0f}s") from exc
    if check and out.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        )
    return out


def build(dockerfile: str, tag: str) -> float:
    """Build ``deploy/<dockerfile>`` as ``tag``; returns the seconds it took."""
    args = ["build", "--isolation", "chroot", "--format", "docker", *RUN_FLAGS, "-t", tag]
    if base := os.environ.get("LTXSERVE_IMAGE_BASE"):
        if podman("image", "exists", base, check=False).returncode != 0:
            pytest.fail(f"base image {base} is missing: run scripts/debian-base-image.sh {base}")
        args += ["--build-arg", f"BASE={base}"]
    if torch := os.environ.get("LTXSERVE_IMAGE_TORCH"):
        args += ["--build-arg", f"TORCH_INSTALL={torch}"]
    if wheels := os.environ.get("LTXSERVE_IMAGE_WHEELS"):
        args += ["--volume", f"{wheels}:/wheels:ro"]
    started = time.monotonic()
    podman(*args, "-f", f"deploy/{dockerfile}", str(ROOT), timeout=3600)
    return time.monotonic() - started


@dataclass(frozen=True)
class Image:
    tag: str
    size: int
    user: str
    healthcheck: dict[str, object] | None  # podman inspect keeps it beside Config, not in it


@pytest.fixture(scope="module")
def images() -> dict[str, Image]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman)")
    built = {}
    for role, tag in TAGS.items():
        seconds = build(f"Dockerfile.{role}", tag)
        (inspect,) = json.loads(podman("image", "inspect", tag).stdout)
        built[role] = Image(
            tag, inspect["Size"], inspect["Config"].get("User", ""), inspect.get("Healthcheck")
        )
        print(f"{tag}: {inspect['Size'] / 1e9:.2f} GB, built in {seconds:.0f}s", file=sys.stderr)
    return built


@dataclass(frozen=True)
class Stack:
    api_url: str
    api_port: int
    metrics_port: int
    database: str
    key: str
    names: dict[str, str]


def readable_copy(src: Path, dst: Path) -> Path:
    """The model, readable by the image's unprivileged user (pytest's folders are 0700)."""
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


@pytest.fixture
def stack(images: dict[str, Image], weed_up: Weed, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    """migrate (one-shot) and a key from the API image, then the API and worker containers."""
    port, metrics_port = free_port(), free_port()
    model = readable_copy(tiny_model_dir, tmp_path / "model")
    with pg_database("ltxserve_img") as pg:
        env = {
            "LTXSERVE_DATABASE_URL": pg,
            **weed_up.settings_env(),
            "LTXSERVE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "LTXSERVE_AUTO_MIGRATE": "false",
            "LTXSERVE_PORT": str(port),
            "LTXSERVE_METRICS_PORT": str(metrics_port),
            "LTXSERVE_DEVICE": "cpu",
            "LTXSERVE_MODEL_PATH": MODEL_IN_CONTAINER,
            "LTXSERVE_MAX_SEQUENCE_LENGTH": "64",
            "LTXSERVE_ENHANCE_MAX_NEW_TOKENS": "8",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
        flags = [*RUN_FLAGS, *(f"--env={k}={v}" for k, v in env.items())]
        api, worker = images["api"].tag, images["worker"].tag
        podman("run", "--rm", *flags, api, "ltxserve", "db", "upgrade", timeout=600)
        key_out = podman("run", "--rm", *flags, api, "ltxserve", "keys", "create", "--name", "images").stdout
        key = next(word for word in key_out.split() if word.startswith("ltx_"))
        names = {role: f"ltxserve-{role}-{uuid.uuid4().hex[:8]}" for role in TAGS}
        try:
            podman("run", "-d", "--name", names["api"], *flags, api)
            podman(
                "run", "-d", "--name", names["worker"], *flags,
                f"--volume={model}:{MODEL_IN_CONTAINER}:ro", worker,
            )  # fmt: skip
            yield Stack(f"http://127.0.0.1:{port}", port, metrics_port, pg, key, names)
        finally:
            for name in names.values():
                logs = podman("logs", name, check=False)
                (tmp_path / f"{name}.log").write_text(logs.stdout + logs.stderr)
                podman("rm", "-f", "-t", "60", name, check=False)


def wait_for(url: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise AssertionError(f"{url} never answered 200")


def test_images_run_unprivileged_with_healthchecks(images: dict[str, Image]) -> None:
    for image in images.values():
        assert image.user not in ("", "root", "0"), image.tag
        assert image.healthcheck, f"{image.tag}: HEALTHCHECK kept (--format docker)"
        # no pip (nor a compiler) in the runtime stage: packages, not the tools that installed them
        probe = podman(
            "run", "--rm", *RUN_FLAGS, "--entrypoint", "sh", image.tag, "-c",
            "id -u; command -v pip gcc cc || true",
        ).stdout.split()  # fmt: skip
        assert probe == ["10001"], (image.tag, probe)
        # the source's layer is small (a code change ships it alone), the venv's holds the rest
        layers = json.loads(podman("history", "--format", "json", image.tag).stdout)
        (app,) = [layer["size"] for layer in layers if layer["CreatedBy"].strip().endswith("in /opt/app")]
        (venv,) = [layer["size"] for layer in layers if layer["CreatedBy"].strip().endswith("in /opt/venv")]
        assert app < 50e6 < venv, (image.tag, app, venv)


def test_one_task_through_the_built_stack(stack: Stack, tmp_path: Path) -> None:
    wait_for(f"{stack.api_url}/readyz")
    assert podman("healthcheck", "run", stack.names["api"], check=False).returncode == 0
    client = Client("runware-sdk-1.8.0-websocket", RUNWARE_SDK_180, "websocket")
    out_dir = tmp_path / "videos"
    out_dir.mkdir()
    document, _ = run_client_script(
        client,
        ensure_sdk_venv(RUNWARE_SDK_180),
        stack.api_port,
        stack.key,
        image=tmp_path / "unused.png",  # only the image_to_video scenario reads it
        out_dir=out_dir,
        timeout=900,
        only=("text_to_video",),
    )
    outcome = document["scenarios"]["text_to_video"]
    assert "exception" not in outcome, outcome
    (item,) = outcome["results"]
    assert item["videoURL"].startswith(f"{stack.api_url}/files/videos/")
    video = Path(item["file"]).read_bytes()
    assert video[4:8] == b"ftyp"  # an MP4 made by the worker container, via S3, through the API
    assert len(video) > 1000
    worker_log = podman("logs", stack.names["worker"])
    assert outcome["taskUUID"] in worker_log.stdout + worker_log.stderr  # the API runs no worker
    # the worker container's metrics listener is up (it starts once the model is loaded), so its
    # HEALTHCHECK, on LTXSERVE_METRICS_PORT, passes
    wait_for(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=60)
    assert podman("healthcheck", "run", stack.names["worker"], check=False).returncode == 0
