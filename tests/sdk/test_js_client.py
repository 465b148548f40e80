"""@runware/sdk-js 1.3.2 (npm), unmodified, against a live ltxserve over WebSocket.

The package is installed once under ``<repo>/.cache/sdk-js`` (ignored by git) with the
machine's npm; without node/npm the test is skipped with a message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from ltxserve.media.probe import probe
from tests.api.conftest import LiveServer

REPO = Path(__file__).resolve().parents[2]
JS_ROOT = REPO / ".cache" / "sdk-js"
PACKAGE = "@runware/sdk-js@1.3.2"
SCRIPT = Path(__file__).resolve().parent / "clients" / "runware_js.mjs"
REQUEST = {
    "model": "lightricks:ltx@2",
    "positivePrompt": "a paper boat on a pond",
    "width": 128,
    "height": 128,
    "duration": 1,
    "fps": 8,
    "steps": 2,
    "settings": {"enhancePrompt": False},
}


@pytest.fixture(scope="module")
def js_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: the JavaScript SDK cannot run here")
    marker = JS_ROOT / "node_modules" / "@runware" / "sdk-js" / "package.json"
    if not marker.exists() or json.loads(marker.read_text())["version"] != PACKAGE.rsplit("@", 1)[1]:
        JS_ROOT.mkdir(parents=True, exist_ok=True)
        (JS_ROOT / "package.json").write_text('{"name": "ltxserve-sdk-js-tests", "private": true}')
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", PACKAGE],
            cwd=JS_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            if "ENOTFOUND" in proc.stderr or "EAI_AGAIN" in proc.stderr:
                pytest.skip(f"the npm registry is unreachable: {proc.stderr[-300:]}")
            raise AssertionError(f"npm install failed:\n{proc.stderr}")
    return JS_ROOT


@pytest.fixture(scope="module")
def js_run(
    js_sdk: Path, sdk_server: LiveServer, first_frame: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out_dir = tmp_path_factory.mktemp("js")
    config = {
        "wsUrl": sdk_server.ws_url,
        "request": REQUEST,
        "image": str(first_frame),
        "outDir": str(out_dir),
    }
    # ES modules resolve packages from the script's own folder: run a copy beside node_modules.
    script = shutil.copy(SCRIPT, js_sdk / SCRIPT.name)
    proc = subprocess.run(
        ["node", str(script), json.dumps(config)],
        cwd=js_sdk,
        env={**os.environ, "RUNWARE_API_KEY": sdk_server.key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    assert "fatal" not in result, result
    return result


def check(item: dict[str, Any], server: LiveServer) -> None:
    assert item["status"] == "success"
    assert uuid.UUID(item["videoUUID"]).version == 4
    assert item["videoURL"] == f"{server.url}/files/videos/{item['videoUUID']}.mp4"
    info = probe(item["file"])
    assert info.video_codec == "h264"
    assert (info.width, info.height, info.frames) == (128, 128, 8)
    assert info.has_audio


def test_js_text_and_image_to_video(js_run: dict[str, Any], sdk_server: LiveServer) -> None:
    (t2v,) = js_run["t2v"]
    check(t2v, sdk_server)
    assert t2v["seed"] == 11
    assert "cost" not in t2v
    (i2v,) = js_run["i2v"]
    check(i2v, sdk_server)


def test_js_two_results_with_cost(js_run: dict[str, Any], sdk_server: LiveServer) -> None:
    items = js_run["multi"]
    assert sorted(i["seed"] for i in items) == [100, 101]
    for item in items:
        check(item, sdk_server)
        assert item["cost"] == pytest.approx(sdk_server.settings.price_per_second * REQUEST["duration"])


def test_js_validation_error(js_run: dict[str, Any]) -> None:
    error = js_run["error"]
    assert error is not None
    assert error["code"] == "invalidWidth"
    assert error["parameter"] == "width"
