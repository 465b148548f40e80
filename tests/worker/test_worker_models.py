"""A worker runs only the models it serves: an API node configured for another family (here it
accepts LTX-2.3's id while the worker runs the tiny LTX-2.0) gets the task refused with
``unsupportedModel``, never generated on the wrong weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ltxserve.engine import Engine
from ltxserve.testing import LiveServer, server_settings, start_server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("models-server")
    settings = server_settings(tmp, model_path=engine.settings.model_path)
    api = server_settings(tmp, model_path=str(Path("/models/ltx-2.3-22b-dev.safetensors")))
    yield from start_server(settings, engine, api_settings=api)


def test_worker_refuses_a_model_it_does_not_serve(live: LiveServer) -> None:
    task_uuid = live.submit(model="lightricks:ltx@2.3")
    body = live.wait(task_uuid)
    (error,) = body["errors"]
    assert error["code"] == "unsupportedModel"
    assert "lightricks:ltx@2" in error["message"]
    assert "lightricks:ltx@2.3" in error["message"]
