"""Runware's official Python clients, unmodified, against a live ltxserve.

Each client (``runware`` 0.5.24 over WebSocket, ``runware-sdk`` 1.8.0 over REST and over
WebSocket) runs four scenarios in one subprocess (``clients/``): text-to-video, image-to-video
from an ``imageUpload``, ``numberResults=2`` with ``includeCost``, and a request with an invalid
width. The tests check what the SDK handed its caller, then fetch each ``videoURL`` and decode
the file.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops

from ltxserve.db.lifecycle import TaskStatus
from ltxserve.db.models import Task
from ltxserve.media.probe import probe
from tests.api.conftest import LiveServer
from tests.sdk.conftest import (
    BASE_REQUEST,
    BATCH_SEED,
    CLIENT_CASES,
    INVALID_WIDTH,
    RUNWARE_0524,
    Client,
    ClientRun,
    Sdk,
    run_client,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=CLIENT_CASES, ids=lambda client: client.id)
def client_run(
    request: pytest.FixtureRequest,
    sdk_pythons: dict[Sdk, Path],
    sdk_server: LiveServer,
    first_frame: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ClientRun:
    """One client script run (all four scenarios), shared by the tests of that client."""
    client: Client = request.param
    out_dir = tmp_path_factory.mktemp(client.id)
    return run_client(client, sdk_pythons[client.sdk], sdk_server, first_frame, out_dir)


def stored_task(server: LiveServer, task_uuid: str) -> Task | None:
    async def find() -> Task | None:
        key = await server.runtime.store.keys.authenticate(server.key)
        assert key is not None
        return await server.runtime.store.tasks.find(key.id, task_uuid)

    return server.call(find())


def check_video(run: ClientRun, item: dict[str, Any], task_uuid: str) -> None:
    """A finished result as the SDK returned it, and its file as served at ``videoURL``."""
    assert item["taskType"] == "videoInference"
    assert item["taskUUID"] == task_uuid
    assert item["status"] == "success"
    video_uuid = item["videoUUID"]
    assert uuid.UUID(video_uuid).version == 4
    assert item["videoURL"] == f"{run.server.url}/files/videos/{video_uuid}.mp4"
    assert isinstance(item["seed"], int)
    assert not isinstance(item["seed"], bool)

    info = probe(item["file"])
    duration, fps = BASE_REQUEST["duration"], BASE_REQUEST["fps"]
    assert info.video_codec == "h264"
    assert (info.width, info.height) == (BASE_REQUEST["width"], BASE_REQUEST["height"])
    assert info.fps == fps
    assert info.frames == duration * fps
    assert info.has_audio, "LTX-2 results carry an audio track unless generateAudio is false"
    assert info.audio_seconds is not None
    assert abs(info.audio_seconds - duration) < 0.1


def test_text_to_video(client_run: ClientRun) -> None:
    outcome = client_run.scenario("text_to_video")
    task_uuid = outcome["taskUUID"]
    if client_run.client.sdk == RUNWARE_0524:
        # videoInference() returned the async acknowledgement, not a result
        assert outcome["ack"] == {
            "class": "IAsyncTaskResponse",
            "taskType": "videoInference",
            "taskUUID": task_uuid,
        }
    (item,) = outcome["results"]
    check_video(client_run, item, task_uuid)
    assert item.get("cost") is None, "cost is reported only with includeCost"

    task = stored_task(client_run.server, task_uuid)
    assert task is not None
    assert task.status == TaskStatus.SUCCESS
    assert task.request["settings"] == {"enhancePrompt": False}
    assert [r.seed for r in task.results] == [item["seed"]]


def test_image_to_video(client_run: ClientRun) -> None:
    outcome = client_run.scenario("image_to_video")
    upload = outcome["upload"]
    image_uuid = upload["imageUUID"]
    assert uuid.UUID(image_uuid).version == 4
    assert upload["imageURL"] == f"{client_run.server.url}/files/uploads/{image_uuid}.png"
    assert uuid.UUID(upload["taskUUID"])
    # the stored upload is the image the client sent, pixel for pixel
    served = httpx.get(upload["imageURL"], timeout=30)
    assert served.status_code == 200
    with Image.open(io.BytesIO(served.content)) as got, Image.open(client_run.image) as sent:
        assert got.size == sent.size
        assert ImageChops.difference(got.convert("RGB"), sent.convert("RGB")).getbbox() is None

    task_uuid = outcome["taskUUID"]
    (item,) = outcome["results"]
    check_video(client_run, item, task_uuid)
    # the task was conditioned on the uploaded image (whichever of the two request shapes the
    # SDK used: 0.5.24 sends a top-level frameImages list, 1.8.0 inputs.frameImages)
    task = stored_task(client_run.server, task_uuid)
    assert task is not None
    assert task.request["inputs"] == {"frameImages": [{"image": image_uuid, "frame": "first"}]}


def test_number_results_with_cost(client_run: ClientRun) -> None:
    outcome = client_run.scenario("batch")
    task_uuid = outcome["taskUUID"]
    results = outcome["results"]
    assert len(results) == 2
    for item in results:
        check_video(client_run, item, task_uuid)
    assert len({item["videoUUID"] for item in results}) == 2
    # distinct seeds: the client's seed, then seed + 1
    assert sorted(item["seed"] for item in results) == [BATCH_SEED, BATCH_SEED + 1]
    # different seeds, different videos
    digests = {hashlib.sha256(Path(item["file"]).read_bytes()).hexdigest() for item in results}
    assert len(digests) == 2
    expected_cost = round(client_run.server.settings.price_per_second * BASE_REQUEST["duration"], 6)
    assert expected_cost > 0
    for item in results:
        assert item["cost"] == pytest.approx(expected_cost)


def test_validation_error(client_run: ClientRun) -> None:
    outcome = client_run.scenario("invalid")
    task_uuid = outcome["taskUUID"]
    error = outcome["error"]
    assert error is not None, f"width {INVALID_WIDTH} was accepted"
    if client_run.client.sdk == RUNWARE_0524:
        # 0.5.24 raises RunwareAPIError carrying the server's error item as is
        assert error["class"] == "RunwareAPIError"
        assert error["code"] == "invalidWidth"
        data = error["data"]
        assert data["code"] == "invalidWidth"
        assert data["parameter"] == "width"
        assert data["taskUUID"] == task_uuid
        assert data["taskType"] == "videoInference"
        assert "multiple of 64" in data["message"]
    else:
        # 1.8.0 raises RunwareError and, by design, maps the server's raw code onto its own
        # categories: invalidWidth -> "validation"
        assert error["class"] == "RunwareError"
        assert error["code"] == "validation"
        assert error["parameter"] == "width"
        assert error["task_uuid"] == task_uuid
        assert error["task_type"] == "videoInference"
        assert error["retryable"] is False
        assert "multiple of 64" in error["message"]
        if client_run.client.transport == "rest":
            assert error["status_code"] == 400
        else:
            # the raw frame, as the SDK's debug log recorded it
            (frame,) = outcome["received"]
            (item,) = frame["errors"]
            assert item["code"] == "invalidWidth"
            assert item["parameter"] == "width"
            assert item["taskUUID"] == task_uuid
    assert stored_task(client_run.server, task_uuid) is None, "a refused task must not be queued"
