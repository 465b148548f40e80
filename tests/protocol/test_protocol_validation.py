"""The videoInference contract and the other tasks: every bad input gets the right (code, parameter)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from ltxserve.config import Settings
from ltxserve.protocol import (
    LTX2_MODEL_ID,
    MAX_ERRORS_PER_TASK,
    AuthenticationTask,
    ErrorCode,
    GetResponseTask,
    ImageRef,
    ImageUploadTask,
    PingTask,
    TaskCancelTask,
    ValidationContext,
    VideoInferenceTask,
    decode_json,
    parse_request,
    parse_task,
    request_json_schema,
)

TASK_UUID = "4d89f0f5-1277-48ee-875d-58e07a4b09d3"
IMAGE_UUID = "aac49721-1964-481a-ae78-8a4e29b91402"
URL = "https://assets.example.com/inputs/edc95535.jpg"
B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
DATA_URI = f"data:image/png;base64,{B64}"
DROP = object()  # marks a key to delete from the base task


def video(**changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": LTX2_MODEL_ID,
        "positivePrompt": "a lighthouse in a storm",
    }
    for key, value in changes.items():
        if value is DROP:
            task.pop(key, None)
        else:
            task[key] = value
    return task


def ok(raw: object, ctx: ValidationContext | None = None) -> Any:
    task, errors = parse_task(raw, ctx)
    assert errors == [], [e.to_wire() for e in errors]
    assert task is not None
    return task


def problems(raw: object, ctx: ValidationContext | None = None) -> set[tuple[str, str | None]]:
    task, errors = parse_task(raw, ctx)
    assert task is None
    assert errors
    return {(str(e.code), e.parameter) for e in errors}


# --------------------------------------------------------------------------- the table

BAD: list[Any] = [
    # taskUUID
    pytest.param(video(taskUUID=DROP), {("missingTaskUUID", "taskUUID")}, id="taskUUID-missing"),
    pytest.param(
        video(taskUUID="4d89f0f5-1277-18ee-875d-58e07a4b09d3"),
        {("invalidTaskUUID", "taskUUID")},
        id="taskUUID-v1",
    ),
    pytest.param(video(taskUUID="not-a-uuid"), {("invalidTaskUUID", "taskUUID")}, id="taskUUID-garbage"),
    pytest.param(video(taskUUID=12345), {("invalidTaskUUID", "taskUUID")}, id="taskUUID-int"),
    pytest.param(
        video(taskUUID="{" + TASK_UUID + "}"), {("invalidTaskUUID", "taskUUID")}, id="taskUUID-braces"
    ),
    # model
    pytest.param(video(model=DROP), {("missingModel", "model")}, id="model-missing"),
    pytest.param(video(model="runware:101@1"), {("invalidModel", "model")}, id="model-unknown"),
    pytest.param(video(model=["lightricks:ltx@2"]), {("invalidModel", "model")}, id="model-array"),
    # prompts
    pytest.param(
        video(positivePrompt=DROP), {("missingPositivePrompt", "positivePrompt")}, id="prompt-missing"
    ),
    pytest.param(
        video(positivePrompt="   "), {("invalidPositivePrompt", "positivePrompt")}, id="prompt-blank"
    ),
    pytest.param(video(positivePrompt=42), {("invalidPositivePrompt", "positivePrompt")}, id="prompt-int"),
    pytest.param(
        video(positivePrompt="x" * 10_001), {("invalidPositivePrompt", "positivePrompt")}, id="prompt-long"
    ),
    pytest.param(
        video(positivePrompt="a\x00b"), {("invalidPositivePrompt", "positivePrompt")}, id="prompt-nul"
    ),
    pytest.param(
        video(positivePrompt="a\ud800"), {("invalidPositivePrompt", "positivePrompt")}, id="prompt-surrogate"
    ),
    pytest.param(
        video(negativePrompt=["x"]), {("invalidNegativePrompt", "negativePrompt")}, id="negative-array"
    ),
    # output options
    pytest.param(
        video(outputType="base64Data"), {("invalidOutputType", "outputType")}, id="outputType-base64"
    ),
    pytest.param(video(outputType="dataURI"), {("invalidOutputType", "outputType")}, id="outputType-dataURI"),
    pytest.param(video(outputFormat="GIF"), {("invalidOutputFormat", "outputFormat")}, id="outputFormat-gif"),
    pytest.param(
        video(outputFormat="mp4"), {("invalidOutputFormat", "outputFormat")}, id="outputFormat-case"
    ),
    pytest.param(
        video(outputQuality=19), {("invalidOutputQuality", "outputQuality")}, id="outputQuality-low"
    ),
    pytest.param(
        video(outputQuality=100), {("invalidOutputQuality", "outputQuality")}, id="outputQuality-high"
    ),
    pytest.param(
        video(outputQuality=50.5), {("invalidOutputQuality", "outputQuality")}, id="outputQuality-float"
    ),
    pytest.param(
        video(outputQuality="95"), {("invalidOutputQuality", "outputQuality")}, id="outputQuality-str"
    ),
    pytest.param(video(webhookURL="not a url"), {("invalidWebhookURL", "webhookURL")}, id="webhook-garbage"),
    pytest.param(
        video(webhookURL="ftp://example.com/x"), {("invalidWebhookURL", "webhookURL")}, id="webhook-ftp"
    ),
    pytest.param(video(webhookURL=5), {("invalidWebhookURL", "webhookURL")}, id="webhook-int"),
    pytest.param(video(webhookURL="https://"), {("invalidWebhookURL", "webhookURL")}, id="webhook-nohost"),
    pytest.param(
        video(deliveryMethod="sync"), {("invalidDeliveryMethod", "deliveryMethod")}, id="delivery-sync"
    ),
    pytest.param(
        video(deliveryMethod="stream"), {("invalidDeliveryMethod", "deliveryMethod")}, id="delivery-stream"
    ),
    pytest.param(
        video(uploadEndpoint="javascript:alert(1)"),
        {("invalidUploadEndpoint", "uploadEndpoint")},
        id="upload-js",
    ),
    pytest.param(
        video(safety={"checkContent": "yes"}),
        {("invalidCheckContent", "safety.checkContent")},
        id="safety-str",
    ),
    pytest.param(
        video(safety={"checkContent": 1}), {("invalidCheckContent", "safety.checkContent")}, id="safety-int"
    ),
    pytest.param(video(safety={"mode": "strict"}), {("invalidMode", "safety.mode")}, id="safety-mode"),
    pytest.param(video(safety=True), {("invalidSafety", "safety")}, id="safety-bool"),
    pytest.param(video(ttl=59), {("invalidTtl", "ttl")}, id="ttl-low"),
    pytest.param(video(ttl=60.5), {("invalidTtl", "ttl")}, id="ttl-float"),
    pytest.param(video(ttl="3600"), {("invalidTtl", "ttl")}, id="ttl-str"),
    pytest.param(video(includeCost="true"), {("invalidIncludeCost", "includeCost")}, id="includeCost-str"),
    pytest.param(video(includeCost=1), {("invalidIncludeCost", "includeCost")}, id="includeCost-int"),
    pytest.param(video(numberResults=0), {("invalidNumberResults", "numberResults")}, id="numberResults-0"),
    pytest.param(video(numberResults=5), {("invalidNumberResults", "numberResults")}, id="numberResults-5"),
    pytest.param(
        video(numberResults=1.5), {("invalidNumberResults", "numberResults")}, id="numberResults-float"
    ),
    pytest.param(
        video(numberResults=True), {("invalidNumberResults", "numberResults")}, id="numberResults-bool"
    ),
    # size
    pytest.param(video(width=130, height=704), {("invalidWidth", "width")}, id="width-step"),
    pytest.param(video(width=64, height=704), {("invalidWidth", "width")}, id="width-min"),
    pytest.param(video(width=2112, height=704), {("invalidWidth", "width")}, id="width-max"),
    pytest.param(video(width="1280", height=704), {("invalidWidth", "width")}, id="width-str"),
    pytest.param(video(width=1280, height=100), {("invalidHeight", "height")}, id="height-min"),
    pytest.param(video(width=1280, height=True), {("invalidHeight", "height")}, id="height-bool"),
    pytest.param(video(width=1280), {("missingHeight", "height")}, id="width-without-height"),
    pytest.param(video(height=704), {("missingWidth", "width")}, id="height-without-width"),
    pytest.param(video(width=1280, height=None), {("missingHeight", "height")}, id="height-null"),
    # timing and sampling
    pytest.param(video(duration=0), {("invalidDuration", "duration")}, id="duration-0"),
    pytest.param(video(duration=21), {("invalidDuration", "duration")}, id="duration-21"),
    pytest.param(video(duration=2.5), {("invalidDuration", "duration")}, id="duration-fraction"),
    pytest.param(video(fps=0), {("invalidFps", "fps")}, id="fps-0"),
    pytest.param(video(fps=121), {("invalidFps", "fps")}, id="fps-121"),
    pytest.param(video(fps="25"), {("invalidFps", "fps")}, id="fps-str"),
    pytest.param(video(steps=0), {("invalidSteps", "steps")}, id="steps-0"),
    pytest.param(video(steps=101), {("invalidSteps", "steps")}, id="steps-101"),
    pytest.param(video(CFGScale=0.99), {("invalidCFGScale", "CFGScale")}, id="cfg-low"),
    pytest.param(video(CFGScale=20.01), {("invalidCFGScale", "CFGScale")}, id="cfg-high"),
    pytest.param(video(CFGScale=4.555), {("invalidCFGScale", "CFGScale")}, id="cfg-step"),
    pytest.param(video(CFGScale="4"), {("invalidCFGScale", "CFGScale")}, id="cfg-str"),
    pytest.param(video(CFGScale=True), {("invalidCFGScale", "CFGScale")}, id="cfg-bool"),
    pytest.param(video(CFGScale=math.nan), {("invalidCFGScale", "CFGScale")}, id="cfg-nan"),
    pytest.param(video(CFGScale=math.inf), {("invalidCFGScale", "CFGScale")}, id="cfg-inf"),
    pytest.param(video(seed=-1), {("invalidSeed", "seed")}, id="seed-negative"),
    pytest.param(video(seed=2**63), {("invalidSeed", "seed")}, id="seed-too-big"),
    pytest.param(video(seed=10**5000), {("invalidSeed", "seed")}, id="seed-huge"),
    pytest.param(video(seed=1.5), {("invalidSeed", "seed")}, id="seed-float"),
    pytest.param(video(seed="42"), {("invalidSeed", "seed")}, id="seed-str"),
    pytest.param(
        video(settings={"enhancePrompt": "yes"}),
        {("invalidEnhancePrompt", "settings.enhancePrompt")},
        id="enhance",
    ),
    pytest.param(
        video(providerSettings={"lightricks": {"generateAudio": 0}}),
        {("invalidGenerateAudio", "providerSettings.lightricks.generateAudio")},
        id="generateAudio-int",
    ),
    # frame images
    pytest.param(
        video(inputs={"frameImages": [{"image": IMAGE_UUID, "frame": "last"}]}),
        {("invalidFrame", "inputs.frameImages[0].frame")},
        id="frame-last",
    ),
    pytest.param(
        video(inputs={"frameImages": [{"image": IMAGE_UUID, "frame": 1}]}),
        {("invalidFrame", "inputs.frameImages[0].frame")},
        id="frame-1",
    ),
    pytest.param(
        video(inputs={"frameImages": [{"image": IMAGE_UUID, "frame": False}]}),
        {("invalidFrame", "inputs.frameImages[0].frame")},
        id="frame-false",
    ),
    pytest.param(
        video(frameImages=[{"inputImage": IMAGE_UUID, "frame": "last"}]),
        {("invalidFrame", "frameImages[0].frame")},
        id="legacy-frame-last",
    ),
    pytest.param(
        video(inputs={"frameImages": [IMAGE_UUID, URL]}),
        {("invalidFrameImages", "inputs.frameImages")},
        id="two-frame-images",
    ),
    pytest.param(
        video(frameImages=[{"inputImage": IMAGE_UUID}, {"inputImage": URL}]),
        {("invalidFrameImages", "frameImages")},
        id="two-legacy-frame-images",
    ),
    pytest.param(
        video(inputs={"frameImages": [IMAGE_UUID]}, frameImages=[{"inputImage": URL}]),
        {("invalidFrameImages", "frameImages")},
        id="both-shapes",
    ),
    pytest.param(
        video(inputs={"frameImages": ["not an image"]}),
        {("invalidFrameImages", "inputs.frameImages[0]")},
        id="shorthand-not-an-image",
    ),
    pytest.param(
        video(inputs={"frameImages": [{"image": "./cat.png"}]}),
        {("invalidImage", "inputs.frameImages[0].image")},
        id="object-not-an-image",
    ),
    pytest.param(
        video(inputs={"frameImages": [{"image": "data:text/plain;base64,aGk="}]}),
        {("invalidImage", "inputs.frameImages[0].image")},
        id="data-uri-not-image",
    ),
    pytest.param(
        video(inputs={"frameImages": [{"frame": "first"}]}),
        {("missingImage", "inputs.frameImages[0].image")},
        id="object-without-image",
    ),
    pytest.param(
        video(frameImages=[{"frame": "first"}]),
        {("missingInputImage", "frameImages[0].inputImage")},
        id="legacy-without-image",
    ),
    pytest.param(
        video(inputs={"frameImages": [42]}), {("invalidFrameImages", "inputs.frameImages[0]")}, id="item-int"
    ),
    pytest.param(
        video(inputs={"frameImages": "x"}), {("invalidFrameImages", "inputs.frameImages")}, id="not-list"
    ),
    pytest.param(video(inputs=[]), {("invalidInputs", "inputs")}, id="inputs-array"),
    # fields the contract does not list, sent with a value
    pytest.param(video(scheduler="Euler"), {("unsupportedScheduler", "scheduler")}, id="scheduler"),
    pytest.param(video(lora=[{"model": "x", "weight": 1}]), {("unsupportedLora", "lora")}, id="lora"),
    pytest.param(
        video(referenceImages=[URL]), {("unsupportedReferenceImages", "referenceImages")}, id="refs"
    ),
    pytest.param(video(CLIPSkip=2), {("unsupportedCLIPSkip", "CLIPSkip")}, id="clipskip"),
    pytest.param(
        video(advancedFeatures={"x": 1}), {("unsupportedAdvancedFeatures", "advancedFeatures")}, id="adv"
    ),
    pytest.param(
        video(acceleratorOptions={"teaCache": True}),
        {("unsupportedAcceleratorOptions", "acceleratorOptions")},
        id="accel",
    ),
    pytest.param(
        video(inputs={"referenceImages": [URL]}),
        {("unsupportedReferenceImages", "inputs.referenceImages")},
        id="inputs-refs",
    ),
    pytest.param(
        video(settings={"audio": True}), {("unsupportedAudio", "settings.audio")}, id="settings-audio"
    ),
    pytest.param(
        video(providerSettings={"google": {"generateAudio": True}}),
        {("unsupportedGoogle", "providerSettings.google")},
        id="provider-google",
    ),
    pytest.param(
        video(providerSettings={"lightricks": {"mode": "replace_audio"}}),
        {("unsupportedMode", "providerSettings.lightricks.mode")},
        id="lightricks-mode",
    ),
    pytest.param(
        video(safety={"tolerance": True}), {("unsupportedTolerance", "safety.tolerance")}, id="tolerance"
    ),
    pytest.param(video(**{"odd key": 1}), {("unsupportedParameter", '["odd key"]')}, id="odd-key"),
]


@pytest.mark.parametrize(("raw", "expected"), BAD)
def test_bad_input_gets_the_right_code_and_parameter(
    raw: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    assert problems(raw) == expected


def test_every_error_names_the_task() -> None:
    bad_uuid = "4d89f0f5-1277-18ee-875d-58e07a4b09d3"
    _, errors = parse_task(video(taskUUID=bad_uuid, width=130, scheduler="x", fps=0))
    assert len(errors) == 5  # taskUUID, width, missing height, fps, scheduler
    assert {e.task_type for e in errors} == {"videoInference"}
    assert {e.task_uuid for e in errors} == {bad_uuid}  # echoed even though invalid: clients route by it


def test_several_bad_fields_are_reported_together() -> None:
    raw = video(
        taskUUID=DROP,
        model="nope",
        width=100,
        duration=30,
        CFGScale=0,
        outputType="base64Data",
        inputs={"frameImages": [{"image": IMAGE_UUID, "frame": "last"}]},
        scheduler="Euler",
    )
    assert problems(raw) == {
        ("missingTaskUUID", "taskUUID"),
        ("invalidModel", "model"),
        ("invalidWidth", "width"),
        ("missingHeight", "height"),
        ("invalidDuration", "duration"),
        ("invalidCFGScale", "CFGScale"),
        ("invalidOutputType", "outputType"),
        ("invalidFrame", "inputs.frameImages[0].frame"),
        ("unsupportedScheduler", "scheduler"),
    }


def test_messages_and_details_say_what_is_allowed() -> None:
    _, errors = parse_task(
        video(
            width=130,
            height=704,
            outputFormat="GIF",
            CFGScale=4.555,
            frameImages=[{"inputImage": URL, "frame": "last"}],
        )
    )
    by_param = {e.parameter: e.to_wire() for e in errors}
    width = by_param["width"]
    assert width["message"] == "width must be a multiple of 64 between 128 and 2048, got 130"
    assert (width["type"], width["min"], width["max"]) == ("integer", 128, 2048)
    assert width["taskType"] == "videoInference"
    assert width["taskUUID"] == TASK_UUID
    assert by_param["outputFormat"]["allowedValues"] == ["MP4", "WEBM", "MOV"]
    assert "steps of 0.01" in by_param["CFGScale"]["message"]
    frame = by_param["frameImages[0].frame"]
    assert frame["allowedValues"] == ["first", 0]
    assert "first frame" in frame["message"]


def test_long_values_are_shortened_in_messages() -> None:
    _, errors = parse_task(video(taskUUID="x" * 100_000))
    (error,) = errors
    assert len(error.message) < 300
    assert "100000 characters" in error.message


def test_error_count_is_capped() -> None:
    _, errors = parse_task(video(**{f"extra{i}": i for i in range(200)}))
    assert len(errors) == MAX_ERRORS_PER_TASK
    assert errors[-1].code == ErrorCode.INVALID_REQUEST
    assert "151 more" in errors[-1].message


# --------------------------------------------------------------------------- what is accepted


def test_defaults_are_applied() -> None:
    task = ok(video())
    assert isinstance(task, VideoInferenceTask)
    assert (task.width, task.height, task.duration, task.fps, task.steps) == (1280, 704, 5, 25, 40)
    assert task.cfg_scale == 4.0
    assert (task.output_type, task.output_format, task.output_quality) == ("URL", "MP4", 95)
    assert (task.delivery_method, task.number_results, task.include_cost) == ("async", 1, False)
    assert task.seed is None
    assert task.ttl is None
    assert task.webhook_url is None
    assert task.upload_endpoint is None
    assert task.negative_prompt is None
    assert task.settings.enhance_prompt is True
    assert task.provider_settings.lightricks.generate_audio is True
    assert task.safety.effective_mode == "none"
    assert task.frame_image is None


def test_a_full_request_is_accepted_verbatim() -> None:
    presigned = "https://bucket.s3.amazonaws.com/out.mp4?X-Amz-Signature=abc%2F123&X-Amz-Expires=3600"
    task = ok(
        video(
            outputType="URL",
            outputFormat="WEBM",
            outputQuality=20,
            webhookURL="http://hooks.example.com/runware",
            deliveryMethod="async",
            uploadEndpoint=presigned,
            safety={"checkContent": True, "mode": "full"},
            ttl=60,
            includeCost=True,
            numberResults=4,
            negativePrompt="blurry",
            width=2048,
            height=128,
            duration=20,
            fps=120,
            steps=100,
            CFGScale=20,
            seed=2**63 - 1,
            settings={"enhancePrompt": False},
            providerSettings={"lightricks": {"generateAudio": False}},
        )
    )
    assert task.upload_endpoint == presigned  # never re-encoded: it would break the signature
    assert (task.width, task.height, task.number_results, task.seed) == (2048, 128, 4, 2**63 - 1)
    assert task.cfg_scale == 20.0
    assert isinstance(task.cfg_scale, float)
    assert task.safety.effective_mode == "full"
    assert task.settings.enhance_prompt is False
    assert task.provider_settings.lightricks.generate_audio is False


def test_integral_floats_are_accepted_for_integers() -> None:
    task = ok(video(width=1280.0, height=704.0, duration=5.0, numberResults=2.0, seed=7.0))
    assert (task.width, task.height, task.duration, task.number_results, task.seed) == (1280, 704, 5, 2, 7)
    assert isinstance(task.duration, int)


def test_cfg_scale_steps_tolerate_float_rounding() -> None:
    assert ok(video(CFGScale=4.0 + 0.1 * 3)).cfg_scale == pytest.approx(4.3)
    assert ok(video(CFGScale=1)).cfg_scale == 1.0
    assert ok(video(CFGScale=4.55)).cfg_scale == 4.55


def test_null_means_absent() -> None:
    nulls = {
        "scheduler": None,
        "lora": None,
        "referenceImages": None,
        "advancedFeatures": None,
        "acceleratorOptions": None,
        "CLIPSkip": None,
        "seed": None,
        "width": None,
        "height": None,
        "inputs": None,
        "frameImages": None,
        "webhookURL": None,
        "settings": {"enhancePrompt": None, "audio": None},
        "safety": {"checkContent": None, "tolerance": None},
        "providerSettings": {"lightricks": None, "google": None},
    }
    task = ok(video(**nulls))
    assert (task.width, task.height, task.seed) == (1280, 704, None)
    assert task.settings.enhance_prompt is True


def test_prompt_is_stripped() -> None:
    assert ok(video(positivePrompt="  a cat \n")).positive_prompt == "a cat"


@pytest.mark.parametrize(
    ("safety", "mode"),
    [
        ({}, "none"),
        ({"checkContent": False}, "none"),
        ({"checkContent": True}, "fast"),
        ({"mode": "fast"}, "fast"),
        ({"mode": "full"}, "full"),
        ({"checkContent": False, "mode": "full"}, "full"),
        ({"checkContent": True, "mode": "none"}, "none"),
    ],
)
def test_safety_mode(safety: dict[str, Any], mode: str) -> None:
    assert ok(video(safety=safety)).safety.effective_mode == mode


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (IMAGE_UUID, "uuid"),
        (URL, "url"),
        ("http://10.0.0.1:8080/a.png", "url"),
        (DATA_URI, "data_uri"),
        (B64, "base64"),
    ],
)
@pytest.mark.parametrize(
    "shape",
    [
        lambda x: {"inputs": {"frameImages": [x]}},
        lambda x: {"inputs": {"frameImages": [{"image": x}]}},
        lambda x: {"inputs": {"frameImages": [{"image": x, "frame": "first"}]}},
        lambda x: {"inputs": {"frameImages": [{"image": x, "frame": 0}]}},
        lambda x: {"frameImages": [{"inputImage": x, "frame": "first"}]},
        lambda x: {"frameImages": [{"inputImage": x}]},
    ],
    ids=["shorthand", "object", "object-first", "object-0", "legacy-first", "legacy"],
)
def test_both_frame_image_shapes_are_classified(shape: Any, value: str, kind: str) -> None:
    task = ok(video(**shape(value)))
    assert task.frame_image == ImageRef(kind, value)  # type: ignore[arg-type]


def test_image_ref_round_trips_on_dump() -> None:
    task = ok(video(inputs={"frameImages": [{"image": URL, "frame": "first"}]}))
    dumped = task.model_dump(exclude_none=True)
    assert dumped["inputs"] == {"frameImages": [{"image": URL, "frame": "first"}]}
    assert ok(dumped) == task


def test_models_come_from_the_context() -> None:
    ctx = ValidationContext(model_ids=("lightricks:ltx@2", "ltxserve:tiny@1"))
    assert ok(video(model="ltxserve:tiny@1"), ctx).model == "ltxserve:tiny@1"
    _, errors = parse_task(video(model="lightricks:ltx@2.3"), ctx)
    assert [(e.code, e.extra["allowedValues"]) for e in errors] == [("invalidModel", list(ctx.model_ids))]
    assert ValidationContext.from_settings(Settings()).model_ids == ("lightricks:ltx@2",)


def test_prompt_limit_comes_from_the_context() -> None:
    ctx = ValidationContext(max_prompt_length=10)
    assert problems(video(positivePrompt="x" * 11), ctx) == {("invalidPositivePrompt", "positivePrompt")}
    ok(video(positivePrompt=" " + "x" * 10 + " "), ctx)


# --------------------------------------------------------------------------- other tasks


def test_other_tasks() -> None:
    assert isinstance(ok({"taskType": "authentication", "apiKey": "k"}), AuthenticationTask)
    auth = ok({"taskType": "authentication", "apiKey": "k", "connectionSessionUUID": TASK_UUID})
    assert auth.connection_session_uuid == TASK_UUID
    assert isinstance(ok({"taskType": "ping", "ping": True}), PingTask)
    assert ok({"taskType": "getResponse", "taskUUID": TASK_UUID}).task_uuid == TASK_UUID
    upload = ok({"taskType": "imageUpload", "taskUUID": TASK_UUID, "image": DATA_URI})
    assert isinstance(upload, ImageUploadTask)
    assert upload.image == ImageRef("data_uri", DATA_URI)
    assert ok({"taskType": "imageUpload", "taskUUID": TASK_UUID, "image": URL}).image.kind == "url"
    assert isinstance(ok({"taskType": "getResponse", "taskUUID": TASK_UUID}), GetResponseTask)
    assert isinstance(ok({"taskType": "taskCancel", "taskUUID": TASK_UUID}), TaskCancelTask)


def test_other_tasks_errors() -> None:
    assert problems({"taskType": "authentication"}) == {("missingApiKey", "apiKey")}
    assert problems({"taskType": "authentication", "apiKey": ""}) == {("invalidApiKey", "apiKey")}
    assert problems({"taskType": "getResponse"}) == {("missingTaskUUID", "taskUUID")}
    assert problems({"taskType": "taskCancel", "taskUUID": "x"}) == {("invalidTaskUUID", "taskUUID")}
    assert problems({"taskType": "imageUpload", "taskUUID": TASK_UUID}) == {("missingImage", "image")}
    upload_uuid = {"taskType": "imageUpload", "taskUUID": TASK_UUID, "image": IMAGE_UUID}
    assert problems(upload_uuid) == {("invalidImage", "image")}


def test_authentication_errors_carry_no_task_uuid() -> None:
    # @runware/sdk-js matches authentication replies by (taskUUID || taskType) === "authentication"
    _, errors = parse_task({"taskType": "authentication", "taskUUID": TASK_UUID})
    assert errors
    assert all(e.task_uuid is None and e.task_type == "authentication" for e in errors)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"taskType": "imageInference", "taskUUID": TASK_UUID}, ("unsupportedTaskType", "taskType")),
        ({"taskUUID": TASK_UUID}, ("missingTaskType", "taskType")),
        ({"taskType": 7, "taskUUID": TASK_UUID}, ("invalidTaskType", "taskType")),
        ([video()], ("invalidRequest", None)),
        ("videoInference", ("invalidRequest", None)),
        (None, ("invalidRequest", None)),
    ],
)
def test_task_level_errors(raw: object, expected: tuple[str, str | None]) -> None:
    assert problems(raw) == {expected}


def test_unknown_task_type_lists_the_known_ones() -> None:
    _, errors = parse_task({"taskType": "imageInference", "taskUUID": TASK_UUID})
    (error,) = errors
    assert error.task_uuid == TASK_UUID
    assert "videoInference" in error.extra["allowedValues"]


# --------------------------------------------------------------------------- requests


def test_request_body_shapes() -> None:
    results, errors = parse_request([video(), {"taskType": "ping", "ping": True}])
    assert errors == []
    assert [type(task) for task, _ in results] == [VideoInferenceTask, PingTask]
    results, errors = parse_request(video())  # a single object is one task
    assert errors == []
    assert len(results) == 1
    assert results[0][1] == []
    for body in ({"not": "a task"},):
        results, errors = parse_request(body)
        assert errors == []
        assert results[0][0] is None
    for body in ([], "x", 3, None, True):
        results, errors = parse_request(body)
        assert results == []
        assert [e.code for e in errors] == ["invalidRequest"]


def test_one_bad_task_does_not_spoil_the_others() -> None:
    results, _ = parse_request([video(), video(width=1), 5])
    assert [task is not None for task, _ in results] == [True, False, False]


def test_too_many_tasks_are_refused_per_task() -> None:
    other = "0f6f2f7e-3b7a-4c1e-9d7a-2f5b1c0e8a11"
    results, errors = parse_request([video(), video(taskUUID=other)], ValidationContext(max_tasks=1))
    assert errors == []
    assert [(e.code, e.task_uuid) for _, errs in results for e in errs] == [
        ("requestTooLarge", TASK_UUID),
        ("requestTooLarge", other),
    ]


def test_decode_json() -> None:
    assert decode_json(b'[{"a": 1}]') == ([{"a": 1}], None)
    for text in (
        "[",
        '[{"a": NaN}]',
        "[Infinity]",
        "[" * 100_000 + "]" * 100_000,
        b"\xff\xfe\x00",
        "1" * 5000,
    ):
        value, error = decode_json(text)
        assert value is None
        assert error is not None
        assert error.code == "invalidRequest"


# --------------------------------------------------------------------------- JSON schema


def test_json_schema_export() -> None:
    schema = request_json_schema()
    text = json.dumps(schema, allow_nan=False)
    for name in (
        "VideoInferenceTask",
        "AuthenticationTask",
        "GetResponseTask",
        "ImageUploadTask",
        "PingTask",
        "TaskCancelTask",
    ):
        assert f"#/$defs/{name}" in text
    video_schema = schema["$defs"]["VideoInferenceTask"]
    props = video_schema["properties"]
    assert set(video_schema["required"]) == {"taskType", "taskUUID", "model", "positivePrompt"}
    assert props["width"] == {
        "default": 1280,
        "maximum": 2048,
        "minimum": 128,
        "multipleOf": 64,
        "title": "width",
        "type": "integer",
    }
    assert props["CFGScale"]["multipleOf"] == 0.01
    assert props["outputFormat"]["enum"] == ["MP4", "WEBM", "MOV"]
    assert props["taskUUID"]["format"] == "uuid"
    openapi = request_json_schema(ref_template="#/components/schemas/{model}")
    assert "#/components/schemas/VideoInferenceTask" in json.dumps(openapi)
    assert (
        VideoInferenceTask.model_json_schema(by_alias=True)["properties"]["positivePrompt"]["type"]
        == "string"
    )
