"""Schemathesis against the OpenAPI document the server publishes (``/openapi.json``).

Every case schemathesis derives from the request schema of ``POST /v1`` (valid bodies, bodies
that break the schema, raw junk bytes, boundary values) is sent with a valid API key. Each reply
must be no 5xx, arrive in time, and be a well-formed Runware envelope (``assert_envelope``).
Accepted videoInference tasks are cancelled at once so the worker never drowns.

Bounded for the suite (derandomized: the same cases on every run); a longer run, also with
new cases each time (``LTXSERVE_FUZZ_RANDOM=1``)::

    LTXSERVE_FUZZ_EXAMPLES=5000 pytest tests/fuzz/test_fuzz_schemathesis.py --timeout 0
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ltxserve.protocol import LTX2_MODEL_ID
from tests.api.conftest import LiveServer
from tests.fuzz.conftest import (
    REPLY_TIMEOUT_S,
    accepted_uuids,
    assert_envelope,
    cancel,
    fuzz_examples,
    fuzz_settings_for,
    ready,
    sent_task_uuids,
)

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES = fuzz_examples(300)
#: What a schema-valid videoInference needs to be accepted by the fuzz server.
CHEAP = {"model": LTX2_MODEL_ID, "width": 128, "height": 128, "duration": 1, "fps": 8}
STATS: dict[str, int] = {"positive": 0, "negative": 0, "accepted": 0}


@pytest.fixture(scope="module")
def api_schema(fuzz_live: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_live.url}/openapi.json")


def runware_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Custom check: a JSON object with only data/errors, errors never empty, error items with
    code and message (and the parameter they are about), no error keys on data items."""
    assert response.status_code < 500, f"HTTP {response.status_code}"
    text = response.content.decode("utf-8")  # strict: the reply is valid UTF-8
    body = json.loads(text)
    sent = sent_task_uuids(case.body) if isinstance(case.body, list | dict) else None
    assert_envelope(body, sent)
    return None


@pytest.fixture(scope="module")
def fuzz_server(fuzz_live: LiveServer) -> Iterator[LiveServer]:
    yield fuzz_live
    ready(fuzz_live)  # healthy after the whole run
    print(f"\nschemathesis cases sent: {STATS}")


@pytest.mark.parametrize("mode", ["positive", "negative"])
@fuzz_settings_for(EXAMPLES)
@given(data=st.data())
def test_openapi_fuzz(api_schema: Any, fuzz_server: LiveServer, mode: str, data: st.DataObject) -> None:
    operation = api_schema["/v1"]["POST"]
    case = data.draw(operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)), label="case")
    STATS[mode] += 1
    if mode == "positive" and data.draw(st.booleans(), label="served model"):
        # The schema cannot know the deployment's model ids nor what fits its hardware: name
        # the served model and a size this server takes, so that schema-valid tasks also get
        # past validation and the capacity check into the service (images, limits, queue).
        for task in case.body if isinstance(case.body, list) else [case.body]:
            if isinstance(task, dict) and task.get("taskType") == "videoInference":
                task.update(CHEAP)
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_server.key}"},
        checks=[not_a_server_error, runware_envelope],
        timeout=REPLY_TIMEOUT_S,
    )
    body = response.json()
    if isinstance(body, dict):
        accepted = accepted_uuids(body)
        STATS["accepted"] += len(accepted)
        cancel(fuzz_server, accepted)


def test_openapi_request_schema_resolves(api_schema: Any, fuzz_live: LiveServer) -> None:
    """Every reference in the published document resolves inside it, so tools (schemathesis,
    client generators) see the real body of POST /v1 rather than nothing."""
    document = httpx.get(f"{fuzz_live.url}/openapi.json", timeout=REPLY_TIMEOUT_S).json()
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(document))
    assert refs
    for ref in refs:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict), ref
            assert part in node, f"unresolvable $ref {ref}"
            node = node[part]
    assert "VideoInferenceTask" in document["components"]["schemas"]
    (body,) = api_schema["/v1"]["POST"].body
    assert body.media_type == "application/json"
