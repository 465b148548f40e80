"""OpenTelemetry across processes: one trace per task, from the client's HTTP request to the API
node (`ltxserve serve --no-worker`) through the PostgreSQL queue to a separate `ltxserve worker`
and its deliveries, exported by each process with the standard OTLP/HTTP exporter configured only
through ``OTEL_*`` variables, to a real OTLP receiver in this test (protobuf decoded with
``opentelemetry-proto``).

The job runs two-stage (tiny model with its tiny upsampler, distilled preset: its output is
noise) with prompt enhancement, a content check, a webhook and an uploadEndpoint, so every stage
span of the pipeline and both kinds of delivery show.
Spans are batched for ten minutes: they reach the receiver only because each process flushes
its exporter when it stops on SIGTERM.
"""

from __future__ import annotations

import gzip
import json
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ltxserve.testing import video_task
from tests.delivery.test_delivery import Receiver, receiver  # noqa: F401  (the fixture)
from tests.scaleout.cluster import Cluster, Weed, pg_database

pytestmark = pytest.mark.slow

#: The client's own trace: the API's request span continues it (W3C traceparent header).
CLIENT_TRACE = uuid.uuid4().hex
CLIENT_SPAN = uuid.uuid4().hex[:16]
#: Every span the worker makes for one attempt of this job, besides "attempt" itself.
GENERATE_STAGES = ("enhance", "text_encode", "denoise", "upsample", "audio_decode", "video_decode")
RESULT_STAGES = ("safety", "encode", "store")


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]

    @property
    def pid(self) -> Any:
        return self.resource.get("process.pid")


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return None if which is None else getattr(v, which)


def _attrs(kvs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(kvs)
    return {kv.key: _value(kv.value) for kv in items}


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint (``POST /v1/traces``, protobuf) keeping every span it gets."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = (
                    self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
                )
                if ok:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    rec.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for rs in request.resource_spans:
                resource = _attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            Span(
                                s.name,
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                s.kind,
                                _attrs(s.attributes),
                                resource,
                            )
                        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    rec = OtlpReceiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def two_stage_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ltxserve.engine.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-ltx2-up", upsampler=True)


@pytest.fixture
def traced_cluster(
    pg_ok: None,
    weed_up: Weed,
    two_stage_model: Path,
    otlp: OtlpReceiver,
    tmp_path: Path,
) -> Iterator[Cluster]:
    with pg_database("i3_tracing") as url:
        c = Cluster(
            url,
            weed_up,
            two_stage_model,
            tmp_path / "logs",
            apis=1,
            workers=1,
            LTXSERVE_S3_PREFIX=f"t{uuid.uuid4().hex[:8]}/",
            LTXSERVE_SIGTERM_ACTION="drain",
            LTXSERVE_MODEL_PRESET="distilled",
            LTXSERVE_TWO_STAGE_ABOVE_PIXELS=str(64 * 64),
            LTXSERVE_ALLOW_NETWORKS='["127.0.0.1/32"]',  # the webhook receiver is on loopback
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_SERVICE_NAME="ltxserve-test",
            OTEL_TRACES_SAMPLER="parentbased_always_on",
            OTEL_BSP_SCHEDULE_DELAY="600000",  # nothing leaves before the shutdown flush
        )
        try:
            c.start()
            yield c
        finally:
            c.stop()


def _traceparent() -> str:
    return f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


def test_one_trace_from_request_through_the_queue_to_the_worker_and_deliveries(
    traced_cluster: Cluster,
    otlp: OtlpReceiver,
    receiver: Receiver,  # noqa: F811
) -> None:
    c = traced_cluster
    task = video_task(
        model="lightricks:ltx@2-distilled",
        width=128,
        height=128,
        webhookURL=receiver.url,
        uploadEndpoint=f"{receiver.url}/upload",
        settings={"enhancePrompt": True},
        safety={"checkContent": True},
    )
    task_uuid = task["taskUUID"]
    reply = httpx.post(
        f"{c.api_urls[0]}/v1",
        json=[task],
        headers={"Authorization": f"Bearer {c.key}", "traceparent": _traceparent()},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    done = c.wait_done(0, task_uuid, timeout=240)
    assert not done.get("errors"), done
    received = receiver.wait_for(2, timeout=120)
    (hook,) = [r for r in received if r.method == "POST"]
    (upload,) = [r for r in received if r.method == "PUT"]
    assert json.loads(hook.body)["taskUUID"] == task_uuid
    assert upload.body[4:8] == b"ftyp"  # the stored MP4, read back from S3
    c.wait_db("SELECT 1 FROM deliveries WHERE status = 'delivered' HAVING count(*) = 2")
    # The receiver can join the trace: the webhook POST carries it.
    assert hook.headers["traceparent"].split("-")[1] == CLIENT_TRACE

    # SIGTERM: each process flushes its batched spans as it stops (uvicorn re-raises the signal
    # after its graceful shutdown, so the API node exits "killed by SIGTERM", without atexit).
    (api,), (worker,) = c.apis, c.workers
    assert worker.signal(signal.SIGTERM) == 0, worker.tail()
    assert api.signal(signal.SIGTERM) in (0, -signal.SIGTERM), api.tail()

    spans = list(otlp.spans)
    ours = [s for s in spans if s.trace_id == CLIENT_TRACE]
    names = sorted(s.name for s in ours)
    # One trace: every span of the task's pipeline is in it, none in another trace.
    task_span_names = {"videoInference", "enqueue", "queue", "attempt", "generate", "webhook", "upload"}
    task_span_names |= {*GENERATE_STAGES, *RESULT_STAGES}
    strays = [(s.name, s.trace_id) for s in spans if s.name in task_span_names and s.trace_id != CLIENT_TRACE]
    assert not strays, f"task spans outside the task's trace: {strays}"

    by_id = {s.span_id: s for s in ours}

    def one(name: str, **attrs: Any) -> Span:
        found = [
            s for s in ours if s.name == name and all(s.attributes.get(k) == v for k, v in attrs.items())
        ]
        assert len(found) == 1, f"{len(found)} {name} spans {attrs} in the task's trace; it has {names}"
        return found[0]

    def parent(span: Span) -> Span:
        assert span.parent_id in by_id, f"{span.name}: parent {span.parent_id} is not in the trace"
        return by_id[span.parent_id]

    # API request (FastAPI's span, continuing the client's) -> videoInference -> enqueue (API node)
    request = one("POST /v1")
    assert request.parent_id == CLIENT_SPAN  # the client's span, remote
    assert request.kind == 2  # SPAN_KIND_SERVER
    assert request.attributes["http.response.status_code"] == 200
    submit = one("videoInference", **{"task.uuid": task_uuid})
    up = [parent(submit)]
    while up[-1] is not request:  # FastAPI's endpoint span may sit between them
        assert up[-1].name.startswith("fastapi."), [s.name for s in up]
        up.append(parent(up[-1]))
    assert parent(one("enqueue")) is submit
    # -> the queue wait and the attempt, continued by the worker from the task row
    assert parent(one("queue")) is submit
    attempt = one("attempt", **{"task.attempt": 1})
    assert parent(attempt) is submit
    generate = one("generate")
    assert parent(generate) is attempt
    # -> each stage: enhance, text encode, both denoising stages (upsampling between), decodes
    for stage in GENERATE_STAGES:
        if stage != "denoise":
            assert parent(one(stage)) is generate, stage
    assert parent(one("denoise", stage="base")) is generate
    assert parent(one("denoise", stage="refine")) is generate
    # -> per result: content check, file encode, store
    for stage in RESULT_STAGES:
        assert parent(one(stage)) is attempt, stage
    # -> the webhook and the upload, under the task's span (retried on their own schedule)
    webhook, uploaded = one("webhook"), one("upload")
    for delivery in (webhook, uploaded):
        assert parent(delivery) is submit, delivery.name
        assert delivery.attributes["delivery.outcome"] == "delivered", delivery.name

    # Two processes: the API node's spans and the worker's, each naming its process.
    api_side = {"POST /v1", "fastapi.endpoint", "videoInference", "enqueue"}
    worker_side = {"queue", "attempt", "generate", *GENERATE_STAGES, *RESULT_STAGES}
    for s in ours:
        assert s.resource["service.name"] == "ltxserve-test", s.resource
        if s.name in api_side:
            assert (s.pid, s.resource["ltxserve.role"]) == (api.pid, "api"), s.name
        elif s.name in worker_side:
            assert (s.pid, s.resource["ltxserve.role"]) == (worker.pid, "worker"), s.name
    for delivery in (webhook, uploaded):  # whichever process's deliverer claimed it
        assert delivery.pid in {api.pid, worker.pid}, delivery.name
    assert api.pid != worker.pid


def test_receiver_decodes_what_the_sdk_exports(otlp: OtlpReceiver) -> None:
    """The receiver itself, on the SDK's exporter in this process (so the test above can fail
    only because of ltxserve)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource({"service.name": "probe", "process.pid": 7}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp.endpoint}/v1/traces")))
    tracer = provider.get_tracer("probe")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner", attributes={"n": 3}):
        pass
    provider.shutdown()
    inner, outer = otlp.spans  # SimpleSpanProcessor: exported as each span ended
    assert (inner.name, outer.name) == ("inner", "outer")
    assert inner.trace_id == outer.trace_id
    assert inner.parent_id == outer.span_id
    assert inner.attributes == {"n": 3}
    assert inner.resource == {"service.name": "probe", "process.pid": 7}
