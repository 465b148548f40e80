"""REST ``POST /v1`` against a real server running the tiny pipeline."""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from ltxserve.media.probe import probe
from tests.api.conftest import LiveServer, video_task


def png_data_uri(size: tuple[int, int] = (96, 64), color: tuple[int, int, int] = (200, 40, 40)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def download(url: str, dest: Path) -> Path:
    reply = httpx.get(url, timeout=30)
    assert reply.status_code == 200, url
    dest.write_bytes(reply.content)
    return dest


def find_error(body: dict[str, Any], code: str) -> dict[str, Any]:
    errors = body.get("errors", [])
    matches = [e for e in errors if e["code"] == code]
    assert matches, f"no {code} in {errors}"
    return matches[0]


def test_text_to_video_roundtrip(live: LiveServer, tmp_path: Path) -> None:
    task_uuid = live.submit(duration=2, fps=6, seed=1234)
    body = live.wait(task_uuid)
    assert "errors" not in body
    (item,) = body["data"]
    assert item["taskType"] == "videoInference"
    assert item["taskUUID"] == task_uuid
    assert item["status"] == "success"
    assert item["seed"] == 1234
    assert "NSFWContent" not in item  # no content check was asked for
    assert "cost" not in item  # only with includeCost
    uuid.UUID(item["videoUUID"], version=4)
    assert item["videoURL"] == f"{live.url}/files/videos/{item['videoUUID']}.mp4"
    info = probe(download(item["videoURL"], tmp_path / "out.mp4"))
    assert info.video_codec == "h264"
    assert (info.width, info.height) == (128, 128)
    assert info.frames == 12
    assert info.fps == 6
    assert info.audio_codec == "aac"
    assert info.audio_seconds == pytest.approx(2.0, abs=1024 / 24000)
    assert info.moov_before_mdat


def test_number_results_distinct_seeds_and_cost(live: LiveServer) -> None:
    task_uuid = live.submit(numberResults=3, seed=100, includeCost=True, duration=2)
    items = live.wait(task_uuid)["data"]
    assert [i["seed"] for i in items] == [100, 101, 102]
    assert len({i["videoUUID"] for i in items}) == 3
    price = live.settings.price_per_second
    assert all(i["cost"] == pytest.approx(price * 2) for i in items)


def test_random_seeds_are_distinct_and_reported(live: LiveServer) -> None:
    items = live.wait(live.submit(numberResults=2))["data"]
    seeds = [i["seed"] for i in items]
    assert len(set(seeds)) == 2
    assert all(isinstance(s, int) and 0 <= s < 2**53 for s in seeds)


@pytest.mark.parametrize(
    ("fmt", "ext", "ctype", "codec"),
    [("WEBM", "webm", "video/webm", "vp9"), ("MOV", "mov", "video/quicktime", "h264")],
)
def test_output_formats(live: LiveServer, tmp_path: Path, fmt: str, ext: str, ctype: str, codec: str) -> None:
    (item,) = live.wait(live.submit(outputFormat=fmt, outputQuality=40))["data"]
    assert item["videoURL"].endswith(f".{ext}")
    reply = httpx.get(item["videoURL"])
    assert reply.headers["content-type"] == ctype
    path = tmp_path / f"out.{ext}"
    path.write_bytes(reply.content)
    info = probe(path)
    assert info.video_codec == codec
    assert info.frames == 8


def test_range_requests(live: LiveServer) -> None:
    (item,) = live.wait(live.submit())["data"]
    full = httpx.get(item["videoURL"])
    assert full.headers["accept-ranges"] == "bytes"
    part = httpx.get(item["videoURL"], headers={"Range": "bytes=10-109"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-109/{len(full.content)}"
    assert part.content == full.content[10:110]
    assert httpx.get(f"{live.url}/files/videos/{uuid.uuid4()}.mp4").status_code == 404
    assert httpx.get(f"{live.url}/files/../ltxserve.db").status_code == 404


BAD_INPUTS: list[tuple[dict[str, Any], str, str]] = [
    ({"width": 130, "height": 128}, "invalidWidth", "width"),
    ({"width": 64, "height": 128}, "invalidWidth", "width"),
    ({"height": 4096, "width": 128}, "invalidHeight", "height"),
    ({"height": None}, "missingHeight", "height"),
    ({"duration": 0}, "invalidDuration", "duration"),
    ({"duration": 21}, "invalidDuration", "duration"),
    ({"duration": "5"}, "invalidDuration", "duration"),
    ({"fps": 121}, "invalidFps", "fps"),
    ({"steps": 0}, "invalidSteps", "steps"),
    ({"CFGScale": 20.5}, "invalidCFGScale", "CFGScale"),
    ({"CFGScale": 4.005}, "invalidCFGScale", "CFGScale"),
    ({"numberResults": 5}, "invalidNumberResults", "numberResults"),
    ({"outputFormat": "GIF"}, "invalidOutputFormat", "outputFormat"),
    ({"outputQuality": 100}, "invalidOutputQuality", "outputQuality"),
    ({"outputType": "base64Data"}, "invalidOutputType", "outputType"),
    ({"deliveryMethod": "sync"}, "invalidDeliveryMethod", "deliveryMethod"),
    ({"ttl": 59}, "invalidTtl", "ttl"),
    ({"model": "runware:100@1"}, "invalidModel", "model"),
    ({"model": None}, "missingModel", "model"),
    ({"positivePrompt": None}, "missingPositivePrompt", "positivePrompt"),
    ({"positivePrompt": "   "}, "invalidPositivePrompt", "positivePrompt"),
    ({"taskUUID": "not-a-uuid"}, "invalidTaskUUID", "taskUUID"),
    ({"taskUUID": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, "invalidTaskUUID", "taskUUID"),  # v1
    ({"safety": {"mode": "paranoid"}}, "invalidMode", "safety.mode"),
    (
        {"inputs": {"frameImages": [{"image": png_data_uri(), "frame": "last"}]}},
        "invalidFrame",
        "inputs.frameImages[0].frame",
    ),
    (
        {"inputs": {"frameImages": [png_data_uri(), png_data_uri()]}},
        "invalidFrameImages",
        "inputs.frameImages",
    ),
    ({"inputs": {"frameImages": ["%%%not an image%%%"]}}, "invalidFrameImages", "inputs.frameImages[0]"),
    ({"webhookURL": "ftp://example.com/hook"}, "invalidWebhookURL", "webhookURL"),
    ({"scheduler": "DPM++"}, "unsupportedScheduler", "scheduler"),
    ({"settings": {"enhancePrompt": "yes"}}, "invalidEnhancePrompt", "settings.enhancePrompt"),
]


@pytest.mark.parametrize(("fields", "code", "parameter"), BAD_INPUTS, ids=[c for _, c, _ in BAD_INPUTS])
def test_validation_errors(live: LiveServer, fields: dict[str, Any], code: str, parameter: str) -> None:
    task = video_task(**fields)
    reply = live.post([task])
    assert reply.status_code == 400
    body = reply.json()
    assert "data" not in body
    error = find_error(body, code)
    assert error["parameter"] == parameter
    assert error["taskType"] == "videoInference"
    if fields.get("taskUUID") is None:
        assert error["taskUUID"] == task["taskUUID"]
    assert len(error["message"]) > 10


def test_every_bad_parameter_reported_at_once(live: LiveServer) -> None:
    body = live.post([video_task(width=130, fps=0, steps=101, CFGScale=0.5, positivePrompt=None)]).json()
    codes = {e["code"] for e in body["errors"]}
    assert codes == {"invalidWidth", "invalidFps", "invalidSteps", "invalidCFGScale", "missingPositivePrompt"}


def test_unknown_task_type_and_bad_bodies(live: LiveServer) -> None:
    body = live.post([{"taskType": "imageInference", "taskUUID": str(uuid.uuid4())}]).json()
    assert find_error(body, "unsupportedTaskType")["parameter"] == "taskType"
    bad = httpx.post(f"{live.url}/v1", content=b"{not json", headers={"Authorization": f"Bearer {live.key}"})
    assert bad.status_code == 400
    assert find_error(bad.json(), "invalidRequest")
    assert live.post({"taskType": "ping", "ping": True}).json() == {
        "data": [{"taskType": "ping", "pong": True}]
    }


def test_mixed_batch_accepts_good_tasks(live: LiveServer) -> None:
    good, bad = video_task(), video_task(width=130)
    reply = live.post([good, bad])
    assert reply.status_code == 200  # something was accepted
    body = reply.json()
    assert body["data"] == [{"taskType": "videoInference", "taskUUID": good["taskUUID"]}]
    assert find_error(body, "invalidWidth")["taskUUID"] == bad["taskUUID"]
    live.wait(good["taskUUID"])


def test_authentication(live: LiveServer) -> None:
    task = video_task()
    missing = live.post([task], key="")
    assert missing.status_code == 401
    assert find_error(missing.json(), "missingApiKey")["taskUUID"] == task["taskUUID"]
    wrong = live.post([video_task()], key="ltx_wrong")
    assert wrong.status_code == 401
    error = find_error(wrong.json(), "invalidApiKey")
    assert error["parameter"] == "apiKey"
    # The key may come as an authentication task first in the array instead of a header.
    auth = {"taskType": "authentication", "apiKey": live.key}
    reply = live.post([auth, task], key="")
    assert reply.status_code == 200
    data = reply.json()["data"]
    assert data[0]["taskType"] == "authentication"
    assert "taskUUID" not in data[0]
    uuid.UUID(data[0]["connectionSessionUUID"])
    assert data[1] == {"taskType": "videoInference", "taskUUID": task["taskUUID"]}
    live.wait(task["taskUUID"])


def test_revoked_key_is_refused(live: LiveServer) -> None:
    row, key, _ = live.call(live.runtime.store.keys.create("short-lived"))
    assert live.post([{"taskType": "ping", "ping": True}], key=key).status_code == 200
    assert live.call(live.runtime.store.keys.revoke(row.prefix))
    reply = live.post([video_task()], key=key)
    assert reply.status_code == 401
    assert find_error(reply.json(), "invalidApiKey")


def test_keys_are_stored_hashed(live: LiveServer) -> None:
    rows = live.call(live.runtime.store.keys.list())
    assert rows
    assert all(live.key not in (r.key_hash, r.prefix, r.name) for r in rows)
    db = (live.settings.data_dir / "ltxserve.db").read_bytes()
    assert live.key.encode() not in db


def test_other_keys_task_looks_unknown(live: LiveServer) -> None:
    task_uuid = live.submit()
    live.wait(task_uuid)
    theirs = live.post([{"taskType": "getResponse", "taskUUID": task_uuid}], key=live.other_key)
    unknown_uuid = str(uuid.uuid4())
    unknown = live.post([{"taskType": "getResponse", "taskUUID": unknown_uuid}], key=live.other_key)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == {
        "errors": [
            e | {"taskUUID": task_uuid, "message": e["message"].replace(unknown_uuid, task_uuid)}
            for e in unknown.json()["errors"]
        ]
    }
    assert find_error(theirs.json(), "taskNotFound")


def test_conflicting_task_uuid(live: LiveServer) -> None:
    task = video_task()
    assert live.post([task]).status_code == 200
    again = live.post([task])
    assert again.status_code == 400
    error = find_error(again.json(), "conflictTaskUUID")
    assert error["taskUUID"] == task["taskUUID"]
    assert error["parameter"] == "taskUUID"
    # Task UUIDs are per key: another key may use the same one.
    assert live.post([task], key=live.other_key).status_code == 200
    live.wait(task["taskUUID"])
    live.wait(task["taskUUID"], key=live.other_key)


def test_image_upload_and_image_to_video(live: LiveServer, tmp_path: Path) -> None:
    upload_uuid = str(uuid.uuid4())
    reply = live.post([{"taskType": "imageUpload", "taskUUID": upload_uuid, "image": png_data_uri()}])
    assert reply.status_code == 200
    (item,) = reply.json()["data"]
    assert item["taskType"] == "imageUpload"
    assert item["taskUUID"] == upload_uuid
    stored = Image.open(io.BytesIO(httpx.get(item["imageURL"]).content))
    assert stored.size == (96, 64)
    i2v = live.submit(inputs={"frameImages": [{"image": item["imageUUID"], "frame": "first"}]})
    (result,) = live.wait(i2v)["data"]
    assert probe(download(result["videoURL"], tmp_path / "i2v.mp4")).frames == 8
    # Another key cannot use this key's upload.
    other = live.post([video_task(inputs={"frameImages": [item["imageUUID"]]})], key=live.other_key).json()
    assert find_error(other, "invalidImage")["parameter"] == "inputs.frameImages[0].image"


def test_inline_images_both_shapes(live: LiveServer) -> None:
    raw_b64 = png_data_uri((64, 64), (10, 200, 10)).split(",", 1)[1]
    new_shape = live.submit(inputs={"frameImages": [raw_b64]})
    legacy = live.submit(frameImages=[{"inputImage": png_data_uri(), "frame": "first"}])
    assert live.wait(new_shape)["data"][0]["status"] == "success"
    assert live.wait(legacy)["data"][0]["status"] == "success"


def test_bad_images_are_named(live: LiveServer) -> None:
    truncated = png_data_uri()[:200]
    body = live.post([video_task(inputs={"frameImages": [truncated]})]).json()
    assert find_error(body, "invalidImage")["parameter"] == "inputs.frameImages[0].image"
    body = live.post(
        [video_task(frameImages=[{"inputImage": "aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYW4gaW1hZ2U="}])]
    ).json()
    assert find_error(body, "invalidInputImage")["parameter"] == "frameImages[0].inputImage"
    upload = live.post(
        [{"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": truncated}]
    ).json()
    assert find_error(upload, "invalidImage")["parameter"] == "image"
    unknown = live.post([video_task(inputs={"frameImages": [str(uuid.uuid4())]})]).json()
    assert "has not uploaded" in find_error(unknown, "invalidImage")["message"]


def test_capacity_refused_before_queueing(live: LiveServer) -> None:
    task = video_task(width=2048, height=2048, duration=20, fps=120)
    reply = live.post([task])
    assert reply.status_code == 400
    error = find_error(reply.json(), "unsupportedFps")
    assert error["parameter"] == "fps"
    assert "video tokens" in error["message"]
    missing = live.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
    assert find_error(missing.json(), "taskNotFound")


def test_health_endpoints(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live.url}/readyz").json()
    assert ready.pop("recipe").startswith("dev (Lightricks TI2VidTwoStagesPipeline")  # what jobs run with
    assert ready == {"status": "ready", "checks": {"store": "ok", "storage": "ok", "model": "ok"}}


def test_request_limits(live: LiveServer) -> None:
    huge = httpx.post(
        f"{live.url}/v1",
        content=b"[" + b" " * (live.settings.max_body_bytes + 10) + b"]",
        headers={"Authorization": f"Bearer {live.key}"},
    )
    assert huge.status_code == 413
    assert find_error(huge.json(), "requestTooLarge")
    many = [video_task() for _ in range(live.settings.max_tasks_per_request + 1)]
    reply = live.post(many)
    assert reply.status_code == 413
    errors = reply.json()["errors"]
    assert {e["taskUUID"] for e in errors} == {t["taskUUID"] for t in many}
