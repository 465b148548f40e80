"""FastAPI app: Runware's REST and WebSocket endpoints on ``/v1``, files, health, the playground.

The app only speaks HTTP. One module per transport holds its routes at module level (vLLM's
``entrypoints/openai`` layout): ``rest``, ``websocket``, ``files``, ``health``, ``playground``.
REST and WebSocket share one request prelude (``prelude``: size cap, decode, parse, auth) and
one ``Dispatcher``; all state lives behind the ``Service``. ``create_app`` only wires them to
one ``Runtime`` through ``app.state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI

from ltxserve import __version__
from ltxserve.api import files, guard, health, playground, rest, websocket
from ltxserve.api.dispatch import Dispatcher
from ltxserve.protocol import ValidationContext
from ltxserve.runtime import Runtime

#: Paths FastAPI's telemetry leaves out: probes and metric scrapes.
UNTRACED: Final = frozenset({"/healthz", "/readyz", "/metrics"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED


def create_app(runtime: Runtime, *, manage_lifecycle: bool = True) -> FastAPI:
    """The app for one runtime; with ``manage_lifecycle`` it starts and stops the runtime too."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await runtime.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await runtime.stop()

    app = FastAPI(
        title="ltxserve",
        version=__version__,
        description="Runware-compatible videoInference API for LTX-2.",
        lifespan=lifespan,
        # FastAPI's own request spans head the tasks' traces (ltxserve.tracing); probes and
        # scrapes would only add a trace every few seconds
        telemetry={"exclude": _untraced},
    )
    app.state.runtime = runtime
    throttle = guard.AuthThrottle(runtime.settings.auth_failures_per_minute)
    app.state.dispatcher = Dispatcher(runtime.service, throttle)
    app.state.validation = ValidationContext.from_settings(runtime.settings)
    for module in (rest, websocket, files, health, playground):
        app.include_router(module.router)

    async def key_is_valid(token: str) -> bool:
        return await runtime.service.authenticate(token) is not None

    # Credentials first: bodies, messages and time before authentication are bounded out here.
    app.add_middleware(guard.Guard, settings=runtime.settings, authenticate=key_is_valid, throttle=throttle)

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = default_openapi()  # built once, then cached by FastAPI
        schema.setdefault("components", {}).setdefault("schemas", {}).update(rest.BODY_MODELS)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
