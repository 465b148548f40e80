"""Deployment files: what can be checked without a Docker engine.

The compose file is parsed and checked against the code (every LTXSERVE_* variable is a real
setting, every command a real CLI command, every build a Dockerfile here); when a compose CLI
is installed (`docker compose` or Debian's `docker-compose`) it validates the file too.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ltxserve.config import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def _cli_ok(args: list[str]) -> None:
    """The command exists with these options (``--help`` parses them and runs nothing)."""
    assert args[0] == "ltxserve"
    subprocess.run(
        [sys.executable, "-m", "ltxserve.cli", *args[1:], "--help"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_compose_services_settings_and_commands() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "s3", "migrate", "api", "worker"} <= set(services)
    fields = {env_name(name) for name in Settings.model_fields}
    for name, service in services.items():
        env = service.get("environment") or {}
        unknown = {k for k in env if k.startswith("LTXSERVE_")} - fields
        assert not unknown, f"{name}: not settings: {unknown}"
        if "build" in service:
            dockerfile = ROOT / service["build"]["dockerfile"]
            assert dockerfile.is_file(), dockerfile
            assert (DEPLOY / service["build"]["context"]).resolve() == ROOT
        if "command" in service and name == "migrate":
            _cli_ok(service["command"])
    assert services["api"]["environment"]["LTXSERVE_DATABASE_URL"].startswith("postgresql://")
    assert services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    s3_config = json.loads((DEPLOY / "seaweedfs-s3.json").read_text())
    key = s3_config["identities"][0]["credentials"][0]
    env = services["api"]["environment"]
    assert (key["accessKey"], key["secretKey"]) == (
        env["LTXSERVE_S3_ACCESS_KEY_ID"],
        env["LTXSERVE_S3_SECRET_ACCESS_KEY"],
    )


@pytest.mark.parametrize(
    ("dockerfile", "base"), [("Dockerfile.api", "python:3.11"), ("Dockerfile.worker", "nvidia/cuda:")]
)
def test_dockerfiles(dockerfile: str, base: str) -> None:
    text = (DEPLOY / dockerfile).read_text()
    default_base = re.search(r"^ARG BASE=(\S+)$", text, re.M)
    assert default_base is not None
    assert default_base.group(1).startswith(base)
    assert re.search(r"[:@]\d", default_base.group(1)), "a pinned version, not latest"
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    # dependencies (build), the source on top of them (app), the venv without pip (venv), runtime
    assert [s.split()[0] for s in stages] == ["${BASE}", "build", "build", "${BASE}"]
    build, app, _, runtime = stages
    assert "AS build" in build.splitlines()[0]
    assert "pip install" not in runtime  # installed in the build stages, copied over
    # the source travels in its own small layer after the venv's: a code change ships MBs, not GBs
    assert runtime.index("COPY --from=venv /opt/venv /opt/venv") < runtime.index(
        "COPY --from=app /opt/app /opt/app"
    )
    user = re.search(r"^USER (\S+)$", runtime, re.M)
    assert user is not None
    assert user.group(1) not in {"root", "0"}
    assert "HEALTHCHECK" in runtime
    # the source is copied after the dependencies are installed: a code change keeps those layers
    assert "COPY src" not in build
    assert "COPY src" in app
    # the stub's build leftovers are removed (found by running the built image: a stale empty
    # ltxserve/__init__.py from the stub shadowed the real one)
    assert "pip uninstall -y ltxserve && rm -rf /src/src /src/build" in build
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for src in shlex.split(line)[:-1]:
            assert (ROOT / src).exists(), src
    wheel_index = r"--index-url https://download.pytorch.org/whl/(\w+)"
    torch = re.search(rf'^ARG TORCH_INSTALL="torch==([\d.]+) {wheel_index}"$', text, re.M)
    assert torch is not None
    makefile_torch = re.search(r"^TORCH\s*\?=\s*torch==([\d.]+)", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_torch is not None
    assert torch.group(1) == makefile_torch.group(1)
    assert torch.group(2) == ("cpu" if "api" in dockerfile else "cu128")
    cmd = re.search(r"^CMD (\[.+\])$", text, re.M)
    assert cmd is not None
    _cli_ok(json.loads(cmd.group(1)))


def test_dockerignore_keeps_the_context_small() -> None:
    """Only what the Dockerfiles copy goes to the builder (not .venv, .cache, data, ...)."""
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(lines)


@pytest.mark.optional  # no compose CLI is installed by the README's commands
def test_compose_cli_validates_the_file() -> None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        pytest.skip("no compose CLI here (docker compose / docker-compose); the YAML checks above still ran")
    subprocess.run(
        [*command, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], check=True, cwd=ROOT, timeout=60
    )
