"""A real ltxserve (uvicorn, HTTP + WebSocket) on a free port, running the tiny pipeline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltxserve.engine import Engine
from ltxserve.testing import LiveServer, free_port, server_settings, start_server, video_task

__all__ = ["LiveServer", "free_port", "server_settings", "start_server", "video_task"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("server"), model_path=engine.settings.model_path)
    yield from start_server(settings, engine)
