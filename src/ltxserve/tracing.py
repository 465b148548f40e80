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

import atexit
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, Status, StatusCode
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
    resource = Resource.create({"service.name": settings.otel_service_name, "ltxserve.role": role})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # flush what is still batched
    return True


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
