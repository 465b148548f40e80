"""The untrusted-input suite (issue 5): every input from the network is hostile.

Shared here: a live server configured so that whatever the fuzzers get *accepted* stays cheap
(a tiny token budget, small body limit), the one definition of a well-formed Runware reply
(``assert_envelope``), and how many examples the property tests run.

Examples per property test default to a bounded, derandomized run for the suite (about 1,600
generated requests plus ~500 fixed hostile ones, ~1.5 min). A long run raises the count and,
optionally, draws new cases instead of the fixed sequence::

    LTXSERVE_FUZZ_EXAMPLES=5000 pytest tests/fuzz --timeout 0
    LTXSERVE_FUZZ_EXAMPLES=5000 LTXSERVE_FUZZ_RANDOM=1 pytest tests/fuzz --timeout 0
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest

from ltxserve.config import Settings
from ltxserve.engine import Engine
from ltxserve.protocol import LTX2_MODEL_ID
from ltxserve.protocol.errors import leaf_name
from tests.api.conftest import LiveServer, server_settings, start_server

#: Largest transformer sequence the fuzz server accepts: 128x128 at up to 4 latent frames.
#: Anything bigger that passes validation is refused by the capacity check (``unsupported*``).
FUZZ_MAX_VIDEO_TOKENS = 64
#: Body limit of the fuzz server: "giant" payloads of a few MB land on both sides of it.
FUZZ_MAX_BODY_BYTES = 4 * 1024 * 1024
#: No reply may take longer than this (a hang shows up as an httpx timeout).
REPLY_TIMEOUT_S = 20.0


def fuzz_examples(default: int) -> int:
    """Examples per property test: ``default`` unless ``LTXSERVE_FUZZ_EXAMPLES`` says otherwise."""
    return int(os.environ.get("LTXSERVE_FUZZ_EXAMPLES", default))


def fuzz_settings_for(examples: int) -> Any:
    """Hypothesis settings of every property test here: derandomized (the same cases on every
    run, for CI) unless ``LTXSERVE_FUZZ_RANDOM=1`` asks for new ones (Hypothesis then prints
    the seed of a failure: rerun with ``--hypothesis-seed=N``)."""
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=os.environ.get("LTXSERVE_FUZZ_RANDOM", "") in ("", "0"),
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )


def fuzz_server_settings(tmp: Path, model_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_path": str(model_dir),
        "max_video_tokens": FUZZ_MAX_VIDEO_TOKENS,
        "max_body_bytes": FUZZ_MAX_BODY_BYTES,
        # accepted tasks are cancelled right away; the limits must not hide the submit path
        "max_active_tasks_per_key": 1000,
        "max_queue_length": 1000,
        # the fuzzers send thousands of bad keys from one address: the throttle has its own
        # tests (tests/security/test_auth_throttle.py) and must not hide the validation path
        "auth_failures_per_minute": 1_000_000,
        "fetch_connect_timeout_s": 3.0,
        "fetch_read_timeout_s": 3.0,
        "delivery_timeout_s": 3.0,
    }
    values.update(overrides)
    return server_settings(tmp, **values)


def start_fuzz_server(tmp: Path, model_dir: Path, **overrides: Any) -> Iterator[LiveServer]:
    settings = fuzz_server_settings(tmp, model_dir, **overrides)
    # Its own engine: the capacity check reads max_video_tokens from the engine's settings.
    yield from start_server(settings, Engine.load(settings))


@pytest.fixture(scope="module")
def fuzz_live(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LiveServer]:
    yield from start_fuzz_server(tmp_path_factory.mktemp("fuzz"), tiny_model_dir)


# --------------------------------------------------------------------------- the envelope

_FAMILY = re.compile(r"(missing|invalid|unsupported)([A-Z][A-Za-z0-9]*)")
#: Family-shaped codes that are about the request as a whole, not one parameter.
_WHOLE_REQUEST_CODES = frozenset({"invalidRequest"})
_ERROR_KEYS_ON_DATA = frozenset({"code", "error", "errorId"})
_NO_TASK_UUID = frozenset({"authentication", "ping"})


def assert_envelope(body: object, sent_uuids: Iterable[str] | None = None) -> None:
    """``body`` is a well-formed Runware reply, or AssertionError says why.

    ``{"data": [...]}`` and/or ``{"errors": [...]}`` and nothing else; ``errors`` never empty;
    every error has a non-empty ``code`` and ``message``, and a ``parameter`` whenever its code
    is a ``missing*``/``invalid*``/``unsupported*`` one about a parameter (named after it);
    ``data`` items never carry ``code``/``error``/``errorId``; every taskUUID in the reply is
    one the client sent (``sent_uuids``, when given). And no ``internalServerError``: on hostile
    input that is a 5xx in disguise.
    """
    assert isinstance(body, dict), f"reply is not a JSON object: {body!r:.200}"
    assert body, "reply is an empty object"
    extra = set(body) - {"data", "errors"}
    assert not extra, f"reply has keys other than data/errors: {sorted(extra)}"
    sent = set(sent_uuids) if sent_uuids is not None else None
    if "errors" in body:
        errors = body["errors"]
        assert isinstance(errors, list), f"errors is not an array: {errors!r:.200}"
        assert errors, "errors is present but empty (runware-sdk 1.8.0 raises on the key alone)"
        for error in errors:
            _assert_error(error, sent)
    if "data" in body:
        data = body["data"]
        assert isinstance(data, list), f"data is not an array: {data!r:.200}"
        for item in data:
            assert isinstance(item, dict), f"data item is not an object: {item!r:.200}"
            clash = _ERROR_KEYS_ON_DATA & set(item)
            assert not clash, f"data item carries {sorted(clash)} (0.5.24 reads it as an error): {item}"
            assert isinstance(item.get("taskType"), str), f"data item without taskType: {item}"
            if item["taskType"] not in _NO_TASK_UUID:
                assert isinstance(item.get("taskUUID"), str), f"data item without taskUUID: {item}"
            _assert_known_uuid(item, sent)


def _assert_error(error: object, sent: set[str] | None) -> None:
    assert isinstance(error, dict), f"error item is not an object: {error!r:.200}"
    code, message = error.get("code"), error.get("message")
    assert isinstance(code, str), f"error without a code: {error}"
    assert code, f"error without a code: {error}"
    assert isinstance(message, str), f"error without a message: {error}"
    assert message, f"error without a message: {error}"
    for key in ("parameter", "taskType", "taskUUID"):
        assert key not in error or isinstance(error[key], str), f"error {key} is not a string: {error}"
    assert code != "internalServerError", f"the server failed on this input: {error}"
    family = _FAMILY.fullmatch(code)
    if family and code not in _WHOLE_REQUEST_CODES:
        parameter = error.get("parameter")
        assert parameter, f"{code} is about a parameter but names none: {error}"
        named = leaf_name(parameter)
        suffix = family.group(2)
        assert suffix in (named[:1].upper() + named[1:], "Parameter"), (
            f"{code} does not match its parameter {parameter!r}: {error}"
        )
    _assert_known_uuid(error, sent)


def _assert_known_uuid(item: dict[str, Any], sent: set[str] | None) -> None:
    task_uuid = item.get("taskUUID")
    if sent is not None and task_uuid is not None:
        assert task_uuid in sent, f"reply names taskUUID {task_uuid!r}, which the client never sent: {item}"


def sent_task_uuids(tasks: object) -> set[str]:
    """Every string taskUUID in a request: the only ones a reply may name."""
    items = tasks if isinstance(tasks, list) else [tasks]
    return {t["taskUUID"] for t in items if isinstance(t, dict) and isinstance(t.get("taskUUID"), str)}


# --------------------------------------------------------------------------- REST helpers


def post_raw(
    live: LiveServer, content: bytes | str, *, key: str | None = None, timeout: float = REPLY_TIMEOUT_S
) -> tuple[httpx.Response, float]:
    """POST raw bytes to /v1 with the test key; returns the response and its latency, which
    must be within ``timeout`` (never a hang), and the reply must not dwarf the request."""
    headers = {"Content-Type": "application/json"}
    if key != "":
        headers["Authorization"] = f"Bearer {key or live.key}"
    start = time.monotonic()
    response = httpx.post(f"{live.url}/v1", content=content, headers=headers, timeout=timeout)
    elapsed = time.monotonic() - start
    assert elapsed < timeout
    assert_bounded(len(response.content), len(content.encode() if isinstance(content, str) else content))
    return response, elapsed


def assert_bounded(reply_size: int, request_size: int) -> None:
    """No amplification: a reply is at most a few times the request (plus room for messages)."""
    limit = 4 * request_size + 256 * 1024
    assert reply_size <= limit, f"a {request_size}-byte request got a {reply_size}-byte reply"


def to_json_text(value: object) -> str:
    """JSON text with every non-ASCII character escaped: lone surrogates travel as ``\\ud800``."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def check_rest_reply(response: httpx.Response, sent: object = None) -> dict[str, Any]:
    """Status below 500, a JSON object body that is strict UTF-8, and a well-formed envelope."""
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:2000]}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    text = response.content.decode("utf-8")  # strict: no lone surrogates on the wire
    body = json.loads(text)
    assert_envelope(body, sent_task_uuids(sent) if sent is not None else None)
    if response.status_code == 200:
        assert body.get("data"), f"HTTP 200 without data: {body}"
    else:
        assert body.get("errors"), f"HTTP {response.status_code} without errors: {body}"
    return body  # type: ignore[no-any-return]


def accepted_uuids(body: dict[str, Any]) -> list[str]:
    """taskUUIDs of videoInference acks in a reply."""
    return [
        item["taskUUID"]
        for item in body.get("data", [])
        if item.get("taskType") == "videoInference" and "status" not in item and "taskUUID" in item
    ]


def cancel(live: LiveServer, task_uuids: Iterable[str]) -> None:
    """Cancel accepted tasks so the fuzzers never queue real work."""
    tasks = [{"taskType": "taskCancel", "taskUUID": u} for u in task_uuids]
    if tasks:
        reply = live.post(tasks)
        assert reply.status_code == 200, reply.text


def ready(live: LiveServer) -> None:
    """The server is still healthy: /readyz 200 and a REST ping answered."""
    assert httpx.get(f"{live.url}/readyz", timeout=REPLY_TIMEOUT_S).status_code == 200
    pong = live.post([{"taskType": "ping", "ping": True}])
    assert pong.json() == {"data": [{"taskType": "ping", "pong": True}]}


def new_uuid() -> str:
    return str(uuid.uuid4())


def cheap_video(task_uuid: str | None = None) -> dict[str, Any]:
    """A videoInference the fuzz servers accept and the tiny model finishes at once."""
    return {
        "taskType": "videoInference",
        "taskUUID": task_uuid or new_uuid(),
        "model": LTX2_MODEL_ID,
        "positivePrompt": "a red kite",
        "width": 128,
        "height": 128,
        "duration": 1,
        "fps": 1,
        "steps": 1,
        "settings": {"enhancePrompt": False},
    }
