"""OpenTelemetry tracing: one trace per task, from the API request through the queue to the
worker's stages and the webhook/upload deliveries, across processes.

Off unless ``OTEL_TRACES_EXPORTER`` is ``otlp`` or ``console`` (``Settings.otel_traces_exporter``);
the exporter, sampler and resource read their standard ``OTEL_*`` variables themselves. Without
it every span here is OpenTelemetry's no-op span (a few attribute lookups per task).

The trace context crosses processes on the database rows, not on the queue message: the API
stores the W3C ``traceparent`` of its submit span on the task row (and each delivery row copies
it), so whichever worker claims the task, on whichever node, continues the same trace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ltxserve.config import Settings

tracer = trace.get_tracer("ltxserve")
_propagator = TraceContextTextMapPropagator()


def configure(settings: Settings, role: str) -> bool:
    """Install the process's tracer provider when an exporter is configured; True if it was."""
    if settings.otel_traces_exporter == "none":
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    exporter: SpanExporter
    if settings.otel_traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    # process.pid tells the processes of one service (API nodes, workers) apart in a trace
    resource = Resource.create({"ltxserve.role": role, "process.pid": os.getpid()})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # neither OTEL_SERVICE_NAME nor service.name in OTEL_RESOURCE_ATTRIBUTES: ours
        resource = resource.merge(Resource({"service.name": settings.otel_service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # it flushes at exit (atexit); ``flush`` also when stopping
    return True


def flush(timeout_ms: int = 10_000) -> None:
    """Export the batched spans now: called when a process stops, because atexit handlers do not
    run when uvicorn re-raises SIGTERM after its graceful shutdown (the API's last spans would be
    lost). A no-op when tracing is off."""
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_ms)


def carrier() -> dict[str, str] | None:
    """The current span's context as W3C headers (``traceparent``), for a database row."""
    headers: dict[str, str] = {}
    _propagator.inject(headers)
    return headers or None


def parent(headers: dict[str, str] | None) -> context.Context:
    """The context stored by ``carrier`` (an empty context when there is none)."""
    return _propagator.extract(headers or {})


@contextmanager
def span(name: str, ctx: context.Context | None = None, **attributes: Any) -> Iterator[Span]:
    """A span around a block, current inside it; an exception marks it as an error."""
    with tracer.start_as_current_span(name, context=ctx, attributes=_clean(attributes)) as current:
        yield current


@contextmanager
def message_span(name: str, **attributes: Any) -> Iterator[Span]:
    """The root of a new trace for one message of a long-lived connection, linked to the
    connection's span (FastAPI's ``WS /v1``): the tasks it submits get a trace each, not the
    connection's hours-long one."""
    connection = trace.get_current_span().get_span_context()
    links = [Link(connection)] if connection.is_valid else None
    with tracer.start_as_current_span(
        name, context=context.Context(), kind=SpanKind.SERVER, links=links, attributes=_clean(attributes)
    ) as current:
        yield current


def outgoing() -> dict[str, str]:
    """``traceparent`` for an outbound request of a recorded span (the receiver may join the
    trace); nothing when tracing is off."""
    if not trace.get_current_span().is_recording():
        return {}
    return carrier() or {}


def start(
    name: str, ctx: context.Context | None = None, start_time: datetime | None = None, **attributes: Any
) -> Span:
    """A span ended by the caller (it outlives one block, e.g. a task attempt)."""
    ns = None if start_time is None else int(start_time.timestamp() * 1e9)
    return tracer.start_span(name, context=ctx, start_time=ns, attributes=_clean(attributes))


def use(current: Span) -> Any:
    """Make a span started with ``start`` current in a block (it is not ended there)."""
    return trace.use_span(current, end_on_exit=False)


def end(current: Span, error: BaseException | None = None, end_time: datetime | None = None) -> None:
    if error is not None:
        current.record_exception(error)
        current.set_status(Status(StatusCode.ERROR, type(error).__name__))
    current.end(None if end_time is None else int(end_time.timestamp() * 1e9))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k.replace("__", "."): v for k, v in attributes.items() if v is not None}
