"""Every error code ltxserve sends, and the one shape errors take on the wire.

Codes follow Runware's: fixed platform codes plus the ``missing<Param>`` / ``invalid<Param>`` /
``unsupported<Param>`` families for validation, one error per bad parameter. REST and
WebSocket share this module (and ``http_status``) so both transports report alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Fixed (non-family) error codes; each is sent somewhere (a bad ``model`` is ``invalidModel``
    through the ``invalid`` family, a job too large for the workers ``unsupported<Param>``)."""

    INVALID_API_KEY = "invalidApiKey"
    MISSING_API_KEY = "missingApiKey"
    CONFLICT_TASK_UUID = "conflictTaskUUID"
    TASK_NOT_FOUND = "taskNotFound"
    TASK_CANCELLED = "taskCancelled"
    INFERENCE_ERROR = "inferenceError"
    INTERNAL_SERVER_ERROR = "internalServerError"
    SERVICE_UNAVAILABLE = "serviceUnavailable"
    RATE_LIMIT_EXCEEDED = "rateLimitExceeded"
    NSFW_CONTENT_DETECTED = "nsfwContentDetected"
    UNSUPPORTED_TASK_TYPE = "unsupportedTaskType"
    INVALID_REQUEST = "invalidRequest"
    REQUEST_TOO_LARGE = "requestTooLarge"
    REQUEST_TIMEOUT = "requestTimeout"


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def leaf_name(parameter: str) -> str:
    """``inputs.frameImages[0].frame`` -> ``frame``: the name the code families are built from."""
    last = parameter.split(".")[-1]
    return last.split("[")[0] or parameter


def missing(parameter: str) -> str:
    return f"missing{_cap(leaf_name(parameter))}"


def invalid(parameter: str) -> str:
    return f"invalid{_cap(leaf_name(parameter))}"


def unsupported(parameter: str) -> str:
    return f"unsupported{_cap(leaf_name(parameter))}"


@dataclass
class ErrorDetail:
    """One item of an ``errors`` array."""

    code: str
    message: str
    parameter: str | None = None
    task_type: str | None = None
    task_uuid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # type, allowedValues, min, max, ...

    def to_wire(self) -> dict[str, Any]:
        item: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.parameter is not None:
            item["parameter"] = self.parameter
        if self.task_type is not None:
            item["taskType"] = self.task_type
        if self.task_uuid is not None:
            item["taskUUID"] = self.task_uuid
        item.update(self.extra)
        return item


class RunwareError(Exception):
    """Raised anywhere below the API to answer a task with one or more error items."""

    def __init__(self, errors: list[ErrorDetail] | ErrorDetail, status: int | None = None) -> None:
        self.errors = errors if isinstance(errors, list) else [errors]
        self.status = status if status is not None else http_status(self.errors)
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in self.errors))


_STATUS_BY_CODE: dict[str, int] = {
    ErrorCode.INVALID_API_KEY: 401,
    ErrorCode.MISSING_API_KEY: 401,
    ErrorCode.TASK_NOT_FOUND: 404,
    ErrorCode.RATE_LIMIT_EXCEEDED: 429,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.INTERNAL_SERVER_ERROR: 500,
    ErrorCode.INFERENCE_ERROR: 500,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
}


def http_status(errors: list[ErrorDetail]) -> int:
    """REST status for a reply with no accepted task: the most severe of its errors."""
    statuses = [_STATUS_BY_CODE.get(e.code, 400) for e in errors] or [400]
    return max(statuses)
