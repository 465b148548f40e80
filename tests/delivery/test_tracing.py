"""OpenTelemetry: one trace per task, API submit -> queue -> worker stages -> webhook delivery,
recorded with the SDK's in-memory exporter on a real server (REST, embedded worker, tiny model).

The context crosses on the task row (``trace_context``), the path it takes between processes in
the PostgreSQL mode; the test checks the row holds it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from ltxserve.db.models import Task
from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server
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
    # the trace starts at the API request (FastAPI's own request spans, when present, above it)
    by_id = {s.context.span_id: s for group in spans.values() for s in group if s.context}
    chain, up = [], submit
    while up.parent is not None:
        up = by_id[up.parent.span_id]
        chain.append(up.name)
    assert not chain or chain[-1] == "POST /v1", chain  # FastAPI's request span, where it makes one

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
