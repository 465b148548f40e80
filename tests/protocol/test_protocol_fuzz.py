"""Property: validation answers any JSON-like input with a task or errors, and never raises."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ltxserve.protocol import ErrorDetail, parse_request, parse_task, request_json_schema


def _properties(schema: dict[str, Any]) -> list[str]:
    branches = schema.get("anyOf", [schema])
    return [name for branch in branches for name in branch.get("properties", {})]


hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
given, settings, HealthCheck = hypothesis.given, hypothesis.settings, hypothesis.HealthCheck

# Every wire name the models know (from their schema), plus one they do not.
FIELDS = sorted(
    {name for schema in request_json_schema()["$defs"].values() for name in _properties(schema)}
    | {"scheduler"}
)
TASK_TYPES = ["videoInference", "imageUpload", "getResponse", "authentication", "ping", "imageInference"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.sampled_from(
        [*TASK_TYPES, "first", "last", 0, "URL", "async", "MP4", "4d89f0f5-1277-48ee-875d-58e07a4b09d3"]
    )
    | st.sampled_from(["https://example.com/a.png", "data:image/png;base64,AAAA", "AAAA", "\ud800", "a\x00"])
)
keys = st.sampled_from(FIELDS) | st.text(max_size=8)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)
tasks = st.fixed_dictionaries(
    {"taskType": st.sampled_from(TASK_TYPES), "taskUUID": st.just("4d89f0f5-1277-48ee-875d-58e07a4b09d3")},
    optional={name: json_like for name in FIELDS if name not in ("taskType", "taskUUID")},
)


def _check(task: object, errors: list[ErrorDetail]) -> None:
    assert (task is None) == bool(errors)
    for error in errors:
        wire = error.to_wire()
        assert isinstance(wire["code"], str)
        assert wire["code"]
        assert isinstance(wire["message"], str)
        assert wire["message"]
        json.dumps(wire, ensure_ascii=False, allow_nan=False).encode("utf-8")  # sendable as-is


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_parse_task_never_raises_on_any_value(value: Any) -> None:
    _check(*parse_task(value))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks)
def test_parse_task_never_raises_on_task_like_objects(value: dict[str, Any]) -> None:
    _check(*parse_task(value))


@settings(max_examples=100, deadline=None)
@given(json_like)
def test_parse_request_never_raises(value: Any) -> None:
    results, errors = parse_request(value)
    for error in errors:
        json.dumps(error.to_wire(), allow_nan=False)
    for task, task_errors in results:
        _check(task, task_errors)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep: Any = "x"
    for _ in range(50_000):
        deep = {"inputs": deep}
    task, errors = parse_task(
        {"taskType": "videoInference", "taskUUID": "4d89f0f5-1277-48ee-875d-58e07a4b09d3", "inputs": deep}
    )
    assert task is None
    assert errors
