"""What Runware's official clients really send must validate cleanly.

The bodies below are built the way each client builds them (the code path is named on each);
they were checked against the real clients' output: ``runware`` 0.5.24's
``RunwareBase._buildVideoRequest`` and ``runware-sdk`` 1.8.0's ``Runware.run`` with its REST
transport stubbed.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ltxserve.protocol import VideoInferenceTask, parse_request

TASK_UUID = "4d89f0f5-1277-48ee-875d-58e07a4b09d3"
IMAGE_UUID = "aac49721-1964-481a-ae78-8a4e29b91402"
DATA_URI = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


# runware 0.5.24: _buildVideoRequest puts deliveryMethod/taskType/taskUUID/model first, adds
# numberResults and the stripped positivePrompt when set, then every non-None scalar field of
# IVideoInference (_addOptionalBuiltInDataTypesFields: empty lists skipped), then the
# to_request_dict() of inputs/providerSettings/safety/settings, and frameImages as
# [asdict(IFrameImage) without None values] at the top level.
RUNWARE_0_5_24 = {
    "minimal: IVideoInference(model, positivePrompt)": {
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": "lightricks:ltx@2",
        "positivePrompt": "a cat",
    },
    "typical: every LTX-2 field set": {
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": "lightricks:ltx@2",
        "numberResults": 2,
        "positivePrompt": "a cat",
        "duration": 5,
        "width": 1280,
        "height": 704,
        "outputType": "URL",
        "outputFormat": "MP4",
        "outputQuality": 95,
        "includeCost": True,
        "negativePrompt": "blurry",
        "fps": 25,
        "steps": 40,
        "seed": 42,
        "CFGScale": 4.0,
        "providerSettings": {"lightricks": {"generateAudio": False}},
        "safety": {"checkContent": True, "mode": "fast"},
        "settings": {"enhancePrompt": False},
    },
    "i2v: frameImages=[IFrameImage(inputImage=uuid, frame='first')], duration float": {
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": "lightricks:ltx@2",
        "positivePrompt": "a cat",
        "duration": 5.0,
        "frameImages": [{"inputImage": IMAGE_UUID, "frame": "first"}],
    },
    "i2v: IFrameImage without frame, local file sent as data URI": {
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": "lightricks:ltx@2",
        "positivePrompt": "a cat",
        "frameImages": [{"inputImage": DATA_URI}],
    },
    "i2v: inputs=IVideoInputs(frameImages=[...])": {
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": "lightricks:ltx@2",
        "positivePrompt": "a cat",
        "inputs": {"frameImages": [{"image": "https://example.com/a.png", "frame": "first"}]},
    },
    "webhook: webhookURL added after the build": {
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": "lightricks:ltx@2",
        "positivePrompt": "a cat",
        "webhookURL": "https://hooks.example.com/runware",
    },
    "authentication (server.py connect)": {"taskType": "authentication", "apiKey": "key"},
    "re-authentication with the session": {
        "taskType": "authentication",
        "apiKey": "key",
        "connectionSessionUUID": TASK_UUID,
    },
    "ping (heartbeat)": {"taskType": "ping", "ping": True},
    "getResponse (_sendPollRequest)": {"taskType": "getResponse", "taskUUID": TASK_UUID},
    "imageUpload (_uploadImage, fileToBase64 gives a data URI)": {
        "taskType": "imageUpload",
        "taskUUID": TASK_UUID,
        "image": DATA_URI,
    },
}


def _runware_sdk_1_8_0_run(params: dict[str, Any]) -> dict[str, Any]:
    """runware-sdk 1.8.0 Runware.run: the user's params, then taskType, taskUUID (uuid4 unless
    given) and deliveryMethod ("async" unless given)."""
    wire = {k: v for k, v in params.items() if k not in ("taskType", "taskUUID")}
    wire["taskType"] = params.get("taskType") or "videoInference"  # resolved from the model registry
    wire["taskUUID"] = str(params.get("taskUUID") or uuid.uuid4())
    wire["deliveryMethod"] = params.get("deliveryMethod") or "async"
    return wire


def _runware_sdk_1_8_0_utility(task_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """runware-sdk 1.8.0 Runware._utility (image_upload, get_response)."""
    wire = {k: v for k, v in params.items() if k not in ("taskType", "taskUUID")}
    wire["taskType"] = task_type
    wire["taskUUID"] = str(params.get("taskUUID") or uuid.uuid4())
    return wire


# Every key of 1.8.0's LightricksLtx2Params TypedDict that LTX-2 takes.
LTX2_PARAMS_1_8_0: dict[str, Any] = {
    "model": "lightricks:ltx@2",
    "inputs": {"frameImages": [IMAGE_UUID]},
    "positivePrompt": "a cat",
    "negativePrompt": "blurry",
    "width": 1280,
    "height": 704,
    "duration": 8,
    "fps": 24,
    "steps": 40,
    "CFGScale": 4.5,
    "settings": {"enhancePrompt": True},
    "webhookURL": "https://hooks.example.com/x",
    "includeCost": True,
    "numberResults": 2,
    "uploadEndpoint": "https://bucket.example.com/out.mp4?sig=1",
    "ttl": 3600,
    "outputType": "URL",
    "outputFormat": "MOV",
    "outputQuality": 80,
    "safety": {"checkContent": True},
}

RUNWARE_SDK_1_8_0 = {
    "run(minimal)": _runware_sdk_1_8_0_run(
        {"model": "lightricks:ltx@2", "positivePrompt": "a cat", "duration": 5}
    ),
    "run(all LightricksLtx2Params)": _runware_sdk_1_8_0_run(LTX2_PARAMS_1_8_0),
    "run(explicit taskType and taskUUID)": _runware_sdk_1_8_0_run(
        {
            "taskType": "videoInference",
            "taskUUID": TASK_UUID,
            "model": "lightricks:ltx@2",
            "positivePrompt": "x",
        }
    ),
    "authentication (websocket _authenticate)": {"taskType": "authentication", "apiKey": "key"},
    "ping (websocket heartbeat)": {"taskType": "ping", "ping": True},
    "getResponse (REST/WS polling)": {"taskType": "getResponse", "taskUUID": TASK_UUID},
    "get_response(params)": _runware_sdk_1_8_0_utility("getResponse", {"taskUUID": TASK_UUID}),
    "image_upload(params)": _runware_sdk_1_8_0_utility("imageUpload", {"image": DATA_URI}),
}

# @runware/sdk-js 1.3.2: videoInference = {...params without skipResponse, deliveryMethod:
# "async", taskType}, then baseSingleRequest drops retry/customTaskUUID/includePayload/
# includeGenerationTime and sets taskUUID; getResponse sends {taskType, taskUUID}.
SDK_JS = {
    "videoInference(text to video)": {
        "model": "lightricks:ltx@2",
        "positivePrompt": "a cat",
        "width": 1280,
        "height": 704,
        "duration": 5,
        "numberResults": 1,
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
    },
    "videoInference(image to video)": {
        "model": "lightricks:ltx@2",
        "positivePrompt": "a cat",
        "inputs": {"frameImages": [{"image": IMAGE_UUID, "frame": 0}]},
        "deliveryMethod": "async",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
    },
    "authentication": {"apiKey": "key", "taskType": "authentication"},
    "ping": {"taskType": "ping", "ping": True},
    "getResponse": {"taskUUID": TASK_UUID, "taskType": "getResponse"},
}

ALL = {f"runware 0.5.24 {k}": v for k, v in RUNWARE_0_5_24.items()}
ALL |= {f"runware-sdk 1.8.0 {k}": v for k, v in RUNWARE_SDK_1_8_0.items()}
ALL |= {f"sdk-js {k}": v for k, v in SDK_JS.items()}


@pytest.mark.parametrize("body", list(ALL.values()), ids=list(ALL))
def test_client_bodies_validate(body: dict[str, Any]) -> None:
    results, request_errors = parse_request([body])
    assert request_errors == []
    ((task, errors),) = results
    assert errors == [], [e.to_wire() for e in errors]
    assert task is not None


def test_0_5_24_image_to_video_reads_the_top_level_image() -> None:
    body = RUNWARE_0_5_24["i2v: frameImages=[IFrameImage(inputImage=uuid, frame='first')], duration float"]
    ((task, _),) = parse_request([body])[0]
    assert isinstance(task, VideoInferenceTask)
    assert task.frame_image is not None
    assert task.frame_image.kind == "uuid"
    assert task.duration == 5


def test_1_8_0_full_params_are_taken() -> None:
    ((task, _),) = parse_request([RUNWARE_SDK_1_8_0["run(all LightricksLtx2Params)"]])[0]
    assert isinstance(task, VideoInferenceTask)
    assert (task.duration, task.fps, task.cfg_scale, task.number_results, task.ttl) == (8, 24, 4.5, 2, 3600)
    assert task.output_format == "MOV"
    assert task.safety.effective_mode == "fast"
