"""Health and metrics: ``/healthz`` (alive), ``/readyz`` (database, queue, storage), ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ltxserve import metrics
from ltxserve.api.prelude import runtime
from ltxserve.logs import get_logger

log = get_logger(__name__)

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format; queue gauges are refreshed first when the database answers."""
    try:
        await runtime(request).refresh_gauges()
    except Exception:
        log.warning("metrics: queue gauges not refreshed (database unavailable)")
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Readiness: 200 when every dependency check is ok, else 503 with the checks."""
    checks = await runtime(request).readiness()
    ok = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": checks}
    engine = runtime(request).engine
    if engine is not None:
        body["recipe"] = engine.recipe()  # which of Lightricks' recipes jobs run with
    return JSONResponse(body, status_code=200 if ok else 503)
