"""OpenTelemetry: one trace per task, API submit -> queue -> worker stages -> webhook delivery,
recorded with the SDK's in-memory exporter on a real server (REST, embedded worker, tiny model).

The context crosses on the task row (``trace_context``), the path it takes between processes in
the PostgreSQL mode; the test checks the row holds it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select
from websockets.sync.client import connect

from ltxserve.db.models import Task
from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server, video_task
from tests.delivery.test_delivery import Receiver, receiver  # noqa: F401  (the fixture)

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # once per process: ltxserve's tracer is a proxy to it
    assert trace.get_tracer_provider() is provider, "another test installed a tracer provider first"
    settings = server_settings(tmp_path_factory.mktemp("tracing"), allow_networks=["127.0.0.1/32"])
    yield from start_server(settings, engine)


def spans_of(trace_id: int, until: str, timeout: float = 30) -> dict[str, list[ReadableSpan]]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[ReadableSpan]] = {}
        for s in EXPORTER.get_finished_spans():
            if s.context is not None and s.context.trace_id == trace_id:
                found.setdefault(s.name, []).append(s)
        if until in found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_one_trace_from_request_to_webhook(traced: LiveServer, receiver: Receiver) -> None:  # noqa: F811
    task_uuid = traced.submit(webhookURL=receiver.url, settings={"enhancePrompt": True})
    traced.wait(task_uuid)
    receiver.wait_for(1)
    (submit,) = [
        s
        for s in EXPORTER.get_finished_spans()
        if s.name == "videoInference" and s.attributes and s.attributes.get("task.uuid") == task_uuid
    ]
    assert submit.context is not None
    spans = spans_of(submit.context.trace_id, until="webhook")
    # the trace starts at the API request (FastAPI's own request span, its endpoint span between)
    by_id = {s.context.span_id: s for group in spans.values() for s in group if s.context}
    chain, up = [], submit
    while up.parent is not None:
        up = by_id[up.parent.span_id]
        chain.append(up.name)
    assert chain, "no request span above videoInference"
    assert chain[-1] == "POST /v1", chain
    assert up.kind == SpanKind.SERVER

    # the worker continued the trace stored on the task row
    async def stored_context() -> dict[str, str] | None:
        async with traced.runtime.store.sessions() as s:
            return await s.scalar(select(Task.trace_context).where(Task.task_uuid == task_uuid))

    stored = traced.call(stored_context())
    assert stored is not None
    assert stored["traceparent"].split("-")[1] == f"{submit.context.trace_id:032x}"

    def one(name: str) -> ReadableSpan:
        assert name in spans, f"no {name} span; got {sorted(spans)}"
        (span,) = spans[name]
        return span

    def parent_of(name: str) -> str:
        span = one(name)
        assert span.parent is not None, name
        by_id = {s.context.span_id: s.name for group in spans.values() for s in group if s.context}
        return by_id[span.parent.span_id]

    assert parent_of("enqueue") == "videoInference"
    assert parent_of("queue") == "videoInference"
    assert parent_of("attempt") == "videoInference"
    assert parent_of("generate") == "attempt"
    for stage in ("enhance", "text_encode", "denoise", "video_decode", "audio_decode"):
        assert parent_of(stage) == "generate", stage
    for stage in ("encode", "store"):
        assert parent_of(stage) == "attempt", stage
    assert parent_of("webhook") == "videoInference"
    assert one("webhook").attributes["delivery.outcome"] == "delivered"  # type: ignore[index]
    assert one("queue").start_time <= one("attempt").start_time  # type: ignore[operator]
    assert one("attempt").attributes["task.attempt"] == 1  # type: ignore[index]
    assert one("denoise").attributes["stage"] == "base"  # type: ignore[index]
    # the receiver may join the trace: the webhook carries its span's context
    webhook_span = one("webhook").context
    assert webhook_span is not None
    (hook,) = receiver.requests
    _, trace_id, span_id, _flags = hook.headers["traceparent"].split("-")
    assert (trace_id, span_id) == (f"{webhook_span.trace_id:032x}", f"{webhook_span.span_id:016x}")


def test_each_websocket_message_starts_a_trace(traced: LiveServer) -> None:
    """A long-lived socket's tasks get a trace each (not the connection's), linked to it."""
    with connect(traced.ws_url) as ws:
        ws.send(json.dumps([{"taskType": "authentication", "apiKey": traced.key}]))
        assert json.loads(ws.recv(timeout=30))["data"][0]["taskType"] == "authentication"
        uuids = []
        for _ in range(2):
            task = video_task()
            ws.send(json.dumps([task]))
            assert json.loads(ws.recv(timeout=30))["data"][0]["taskUUID"] == task["taskUUID"]
            uuids.append(task["taskUUID"])
        for task_uuid in uuids:
            traced.wait(task_uuid)
    submits = [
        s
        for s in EXPORTER.get_finished_spans()
        if s.name == "videoInference" and s.attributes and s.attributes.get("task.uuid") in uuids
    ]
    assert len(submits) == 2
    messages = []
    for submit in submits:
        assert submit.context is not None
        spans = spans_of(submit.context.trace_id, until="attempt")
        (message,) = spans["WS /v1 message"]
        assert message.parent is None  # a root: its own trace
        assert message.kind == SpanKind.SERVER
        messages.append(message)
    assert submits[0].context.trace_id != submits[1].context.trace_id  # type: ignore[union-attr]
    # both link to the connection's trace (FastAPI's WS span, or its endpoint span under it)
    (linked,) = {(link.context.trace_id, link.context.span_id) for m in messages for link in m.links}
    connection = [s for s in EXPORTER.get_finished_spans() if s.context and s.context.trace_id == linked[0]]
    assert linked[1] in {s.context.span_id for s in connection if s.context}
    assert [s.kind for s in connection if s.parent is None] == [SpanKind.SERVER]
