"""Runware wire protocol: task models, validation, error codes, reply envelopes, ``to_job``.

Typical use by a transport::

    body, problem = decode_json(raw_bytes)
    results, request_errors = parse_request(body, ValidationContext.from_settings(settings))
    for task, errors in results:
        ...  # errors -> reply(errors=errors); a VideoInferenceTask -> service -> to_job(task, image=...)
"""

from ltxserve.protocol.envelope import (
    ack_item,
    authentication_item,
    image_upload_item,
    pong_item,
    processing_item,
    reply,
    result_error,
    video_success_item,
)
from ltxserve.protocol.errors import ErrorCode, ErrorDetail, RunwareError, http_status
from ltxserve.protocol.jobs import RANDOM_SEED_MAX, result_seeds, to_job
from ltxserve.protocol.models import (
    LTX2_MODEL_ID,
    SEED_MAX,
    TASK_MODELS,
    AuthenticationTask,
    GetResponseTask,
    ImageKind,
    ImageRef,
    ImageUploadTask,
    MediaStorageTask,
    PingTask,
    TaskCancelTask,
    TaskModel,
    ValidationContext,
    VideoInferenceTask,
    request_json_schema,
)
from ltxserve.protocol.validation import (
    MAX_ERRORS_PER_TASK,
    decode_json,
    describe_value,
    parse_request,
    parse_task,
    task_identity,
)

__all__ = [
    "LTX2_MODEL_ID",
    "MAX_ERRORS_PER_TASK",
    "RANDOM_SEED_MAX",
    "SEED_MAX",
    "TASK_MODELS",
    "AuthenticationTask",
    "ErrorCode",
    "ErrorDetail",
    "GetResponseTask",
    "ImageKind",
    "ImageRef",
    "ImageUploadTask",
    "MediaStorageTask",
    "PingTask",
    "RunwareError",
    "TaskCancelTask",
    "TaskModel",
    "ValidationContext",
    "VideoInferenceTask",
    "ack_item",
    "authentication_item",
    "decode_json",
    "describe_value",
    "http_status",
    "image_upload_item",
    "parse_request",
    "parse_task",
    "pong_item",
    "processing_item",
    "reply",
    "request_json_schema",
    "result_error",
    "result_seeds",
    "task_identity",
    "to_job",
    "video_success_item",
]
