"""Validation entry points: raw JSON in, task models or Runware error items out.

Every bad parameter of a task is reported at once, one error each, in Runware's code families:
``missing<Param>`` (absent required), ``unsupported<Param>`` (a field this server does not take,
sent with a value) and ``invalid<Param>`` (everything else), named after the last name in the
path (``inputs.frameImages[0].frame`` -> ``invalidFrame``). Messages are built from the models'
JSON schema, so ranges and allowed values are stated in one place (``models``).

Nothing here raises on hostile input: any value, however nested, large or odd, yields errors.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from typing import Any, Final, cast

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ltxserve.protocol.errors import ErrorCode, ErrorDetail, invalid, missing, unsupported
from ltxserve.protocol.models import (
    INVALID_ERROR,
    MISSING_ERROR,
    TASK_MODELS,
    TaskModel,
    ValidationContext,
    WireModel,
)

#: Past this many problems in one task the rest are summarised in one item.
MAX_ERRORS_PER_TASK: Final = 50
#: A request over the task limit gets at most this many per-task errors (see ``_too_many_tasks``).
MAX_TOO_MANY_TASK_ERRORS: Final = 256

_DEFAULT_CONTEXT: Final = ValidationContext()
#: Task types whose errors must not carry a taskUUID (the JS client matches them by taskType).
_NO_TASK_UUID: Final = frozenset({"authentication", "ping"})
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ECHOABLE = re.compile(r"[\x21-\x7e]{1,128}")
_MAX_SHOWN_CHARS: Final = 40

TaskResult = tuple[TaskModel | None, list[ErrorDetail]]


def decode_json(data: bytes | bytearray | str) -> tuple[object, ErrorDetail | None]:
    """Parse a REST body or WebSocket message; NaN/Infinity and absurd nesting are errors, not values."""
    try:
        return json.loads(data, parse_constant=_reject_constant), None
    except RecursionError:
        reason = "it is nested too deeply"
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, giant integers
        reason = str(exc)[:200]
    return None, ErrorDetail(ErrorCode.INVALID_REQUEST, f"The request is not valid JSON: {reason}")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def parse_request(
    body: object, ctx: ValidationContext | None = None
) -> tuple[list[TaskResult], list[ErrorDetail]]:
    """Split a decoded body into tasks and validate each.

    Returns one ``(task, errors)`` per task, in order, and the errors of the body itself (then
    the list of tasks is empty). Runware's REST takes an array; a single task object is
    accepted as a one-item array.
    """
    ctx = ctx or _DEFAULT_CONTEXT
    if isinstance(body, dict):
        items: list[object] = [body]
    elif isinstance(body, list):
        items = body
    else:
        message = f"The request must be a JSON array of task objects, got {describe_value(body)}"
        return [], [ErrorDetail(ErrorCode.INVALID_REQUEST, message)]
    if not items:
        return [], [
            ErrorDetail(ErrorCode.INVALID_REQUEST, "The request is an empty array: send at least one task")
        ]
    if ctx.max_tasks is not None and len(items) > ctx.max_tasks:
        return _too_many_tasks(items, ctx.max_tasks), []
    return [parse_task(item, ctx) for item in items], []


def _too_many_tasks(items: list[object], max_tasks: int) -> list[TaskResult]:
    """One error per task, each with its taskUUID: runware-sdk 1.8.0 hands an error without a
    taskUUID to every task pending on the connection, not only to this request's. Bounded: past
    ``MAX_TOO_MANY_TASK_ERRORS`` distinct taskUUIDs, and for tasks without one, a single error
    without taskUUID stands for the rest (a huge array of ``null`` must not make a huge reply)."""
    message = f"A request may hold at most {max_tasks} tasks, this one has {len(items)}"
    results: list[TaskResult] = []
    seen: set[str] = set()
    rest = False
    for item in items:
        _task_type, task_uuid = task_identity(item)
        if task_uuid is None or task_uuid in seen:
            rest = True
            continue
        if len(seen) >= MAX_TOO_MANY_TASK_ERRORS:
            rest = True
            break
        seen.add(task_uuid)
        results.append((None, [_error(ErrorCode.REQUEST_TOO_LARGE, message, None, item)]))
    if rest:
        results.append((None, [_error(ErrorCode.REQUEST_TOO_LARGE, message)]))
    return results


def parse_task(raw: object, ctx: ValidationContext | None = None) -> TaskResult:
    """Validate one task object: ``(task, [])`` or ``(None, errors)`` with every problem found."""
    try:
        return _parse_task(raw, ctx or _DEFAULT_CONTEXT)
    except Exception:  # a bug or resource limit must still answer the client, not drop the socket
        return None, [_error(ErrorCode.INVALID_REQUEST, "The task could not be validated", None, raw)]


def task_identity(raw: object) -> tuple[str | None, str | None]:
    """The taskType and taskUUID worth echoing on errors about ``raw``, even when it is invalid:
    clients route error items by them. Never a taskUUID on authentication or ping errors."""
    if not isinstance(raw, dict):
        return None, None
    task_type, task_uuid = raw.get("taskType"), raw.get("taskUUID")
    usable_type = task_type if isinstance(task_type, str) and _ECHOABLE.fullmatch(task_type) else None
    usable_uuid = task_uuid if isinstance(task_uuid, str) and _ECHOABLE.fullmatch(task_uuid) else None
    if usable_type in _NO_TASK_UUID:
        usable_uuid = None
    return usable_type, usable_uuid


def _parse_task(raw: object, ctx: ValidationContext) -> TaskResult:
    if not isinstance(raw, dict):
        return None, [
            _error(ErrorCode.INVALID_REQUEST, f"Each task must be a JSON object, got {describe_value(raw)}")
        ]
    task_type = raw.get("taskType")
    known = ", ".join(TASK_MODELS)
    if task_type is None:
        message = f"taskType is required: one of {known}"
        return None, [_error(missing("taskType"), message, "taskType", raw, allowedValues=list(TASK_MODELS))]
    if not isinstance(task_type, str):
        message = f"taskType must be a string, one of {known}; got {describe_value(task_type)}"
        return None, [_error(invalid("taskType"), message, "taskType", raw, allowedValues=list(TASK_MODELS))]
    model_cls = TASK_MODELS.get(task_type)
    if model_cls is None:
        message = f"taskType {describe_value(task_type)} is not supported by this server; it answers {known}"
        return None, [
            _error(ErrorCode.UNSUPPORTED_TASK_TYPE, message, "taskType", raw, allowedValues=list(TASK_MODELS))
        ]
    try:
        task = model_cls.model_validate(raw, context=ctx)
    except ValidationError as exc:
        errors = [_from_pydantic(error, model_cls, raw) for error in exc.errors(include_url=False)]
        if len(errors) > MAX_ERRORS_PER_TASK:
            hidden = len(errors) - MAX_ERRORS_PER_TASK + 1
            errors = errors[: MAX_ERRORS_PER_TASK - 1]
            summary = f"{hidden} more problems in this task not listed"
            errors.append(_error(ErrorCode.INVALID_REQUEST, summary, None, raw))
        return None, errors
    return cast(TaskModel, task), []


def _error(
    code: str, message: str, parameter: str | None = None, raw: object = None, **extra: Any
) -> ErrorDetail:
    task_type, task_uuid = task_identity(raw)
    return ErrorDetail(code, message, parameter, task_type, task_uuid, extra)


# --------------------------------------------------------------------------- pydantic -> Runware


def _from_pydantic(error: ErrorDetails, model_cls: type[WireModel], raw: object) -> ErrorDetail:
    loc = _reported_loc(error["loc"], raw)
    path = _render(loc)
    leaf = next((seg for seg in reversed(loc) if isinstance(seg, str)), "")
    leaf = leaf if _SAFE_KEY.fullmatch(leaf) else "parameter"
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    schema, note = _schema_at(model_cls, loc)

    if kind in ("string_unicode", "invalid_key"):  # a field *name* pydantic cannot read
        where = f"{path} has" if loc else "The task has"
        return _error(
            ErrorCode.INVALID_REQUEST,
            f"{where} a field name that is not valid text: {describe_value(value)}",
            path if loc else None,
            raw,
        )
    if kind == "extra_forbidden":
        message = f"{path} is not supported by this server: leave it out or send null"
        return _error(unsupported(leaf), message, path, raw)

    extra = _schema_extras(schema) if schema is not None else {}
    extra.update({key: ctx[key] for key in ("allowedValues", "min", "max") if key in ctx})
    if kind in ("missing", MISSING_ERROR):
        message = f"{path} {error['msg']}" if kind == MISSING_ERROR else f"{path} is required"
        return _error(missing(leaf), message, path, raw, **extra)

    if kind == INVALID_ERROR:
        message = f"{path} {error['msg']}"
        if "got" not in message and _is_scalar(value):
            message += f", got {describe_value(value)}"
    elif schema is not None:
        message = f"{path} must be {_describe_schema(schema)}, got {describe_value(value)}"
        if note:
            message += f" ({note})"
    else:  # pragma: no cover - every field has a schema; keep pydantic's words just in case
        message = f"{path}: {error['msg']}"
    return _error(invalid(leaf), message, path, raw, **extra)


def _reported_loc(loc: tuple[int | str, ...], raw: object) -> tuple[int | str, ...]:
    """Stop the path where the client's input stopped: ``["X"]`` given for
    ``[{"image": "X"}]`` is reported at ``frameImages[0]``, not ``frameImages[0].image``."""
    current = raw
    for depth, segment in enumerate(loc):
        if isinstance(current, str):
            return loc[:depth]
        if isinstance(current, list) and isinstance(segment, int) and 0 <= segment < len(current):
            current = current[segment]
            continue
        if isinstance(current, dict) and isinstance(segment, str) and segment in current:
            current = current[segment]
            continue
        break
    return loc


def _render(loc: tuple[int | str, ...]) -> str:
    """``("inputs", "frameImages", 0, "frame")`` -> ``inputs.frameImages[0].frame``."""
    parts: list[str] = []
    for segment in loc:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _SAFE_KEY.fullmatch(segment):
            parts.append(f".{segment}" if parts else segment)
        else:  # odd key from the client: quoted, short, ASCII
            parts.append(f"[{json.dumps(segment[:_MAX_SHOWN_CHARS])}]")
    return "".join(parts) or "task"


# --------------------------------------------------------------------------- schema-driven words


@cache
def _json_schema(model_cls: type[WireModel]) -> dict[str, Any]:
    return model_cls.model_json_schema(by_alias=True)


def _schema_at(
    model_cls: type[WireModel], loc: tuple[int | str, ...]
) -> tuple[list[dict[str, Any]] | None, str]:
    """The JSON schema alternatives (non-null, resolved) of the field at ``loc`` and its
    ``description`` (a hint for messages), or ``(None, "")``."""
    root = _json_schema(model_cls)
    defs: dict[str, Any] = root.get("$defs", {})
    options = [root]
    note = ""
    for segment in loc:
        following: dict[str, Any] | None = None
        for branch in options:
            if isinstance(segment, int) and branch.get("type") == "array":
                following = branch.get("items", {})
                break
            if isinstance(segment, str) and segment in branch.get("properties", {}):
                following = branch["properties"][segment]
                break
        if following is None:
            return None, ""
        note = following.get("description", "") if isinstance(segment, str) else ""
        options = _branches(following, defs)
    return options, note


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    for _ in range(32):
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        schema = defs.get(ref.rsplit("/", 1)[-1], {})
    return schema


def _branches(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a schema, references resolved (one level of anyOf)."""
    schema = _resolve(schema, defs)
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return [schema]
    resolved = [_resolve(option, defs) for option in options]
    return [option for option in resolved if option.get("type") != "null"]


def _describe_schema(options: list[dict[str, Any]]) -> str:
    return " or ".join(_describe_one(option) for option in options)


def _describe_one(schema: dict[str, Any]) -> str:
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        shown = ", ".join(json.dumps(value) for value in values)
        return f"one of {shown}" if len(values) > 1 else shown
    kind = schema.get("type")
    low, high = schema.get("minimum"), schema.get("maximum")
    bounds = ""
    if low is not None and high is not None:
        bounds = f" between {_number(low)} and {_number(high)}"
    elif low is not None:
        bounds = f" of at least {_number(low)}"
    elif high is not None:
        bounds = f" of at most {_number(high)}"
    step = schema.get("multipleOf")
    if kind == "integer":
        return (f"a multiple of {_number(step)}" if step is not None else "an integer") + bounds
    if kind == "number":
        return "a number" + bounds + (f" in steps of {_number(step)}" if step is not None else "")
    if kind == "boolean":
        return "true or false"
    if kind == "string":
        length = schema.get("maxLength")
        fmt = {"uri": "an http(s) URL", "uuid": "a UUID v4"}.get(schema.get("format", ""), "a string")
        return fmt + (f" of at most {length} characters" if length is not None else "")
    if kind == "array":
        most = schema.get("maxItems")
        return "an array" + (f" of at most {most} item{'s' if most != 1 else ''}" if most is not None else "")
    if kind == "object" or "properties" in schema:
        return "an object"
    return "a valid value"


def _schema_extras(options: list[dict[str, Any]]) -> dict[str, Any]:
    if len(options) != 1:
        return {}
    (one,) = options
    extra: dict[str, Any] = {}
    if isinstance(one.get("type"), str):
        extra["type"] = one["type"]
    if "enum" in one or "const" in one:
        extra["allowedValues"] = list(one.get("enum", [one.get("const")]))
    for source, target in (("minimum", "min"), ("maximum", "max")):
        if source in one:
            extra[target] = one[source]
    return extra


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def describe_value(value: object) -> str:
    """A short, safe rendering of a client value for messages (never huge, never unencodable)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 128 else "a very large integer"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        shown = _quote(value[:_MAX_SHOWN_CHARS])
        if len(value) > _MAX_SHOWN_CHARS:
            shown = f'{shown[:-1]}…" ({len(value)} characters)'
        return shown
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "an object"
    return f"a value of type {type(value).__name__}"


def _quote(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    try:
        quoted.encode("utf-8")
    except UnicodeEncodeError:  # unpaired surrogates: escape everything instead
        return json.dumps(text)
    return quoted
