"""LTX-2.3 end to end through Runware's official SDK (runware-sdk 1.8.0, unmodified, over REST and
WebSocket): a server running the tiny random-weight LTX-2.3 model (it outputs noise) answers
``lightricks:ltx@2.3`` with a playable H.264 video carrying its 48 kHz audio track, and refuses a
model it does not serve with ``invalidModel`` on ``model``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ltxserve.config import Settings
from ltxserve.engine import Engine
from ltxserve.engine.tiny import save_tiny_model
from ltxserve.media.probe import probe
from ltxserve.testing import LiveServer, server_settings, start_server, video_task
from tests.sdk.conftest import BASE_REQUEST, RUNWARE_SDK_180, Client, ensure_sdk_venv, run_client

pytestmark = pytest.mark.slow

REQUEST = {**BASE_REQUEST, "model": "lightricks:ltx@2.3", "CFGScale": 3}


@pytest.fixture(scope="module")
def ltx23_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model = save_tiny_model(tmp_path_factory.mktemp("models") / "ltx-2.3-22b-tiny", preset="tiny-2.3")
    engine = Engine.load(
        Settings(data_dir=tmp_path_factory.mktemp("data"), model_path=str(model), max_sequence_length=64)
    )
    settings = server_settings(tmp_path_factory.mktemp("ltx23-server"), model_path=str(model))
    assert settings.served_model_ids() == ("lightricks:ltx@2.3",)
    yield from start_server(settings, engine)


@pytest.mark.parametrize("transport", ["rest", "websocket"])
def test_ltx23_text_to_video_through_runware_sdk(
    transport: str, ltx23_server: LiveServer, first_frame: Path, tmp_path: Path
) -> None:
    client = Client(f"runware-sdk-1.8.0-{transport}", RUNWARE_SDK_180, transport)
    python = ensure_sdk_venv(RUNWARE_SDK_180)
    run = run_client(
        client, python, ltx23_server, first_frame, tmp_path, request=REQUEST, only=("text_to_video",)
    )
    (item,) = run.scenario("text_to_video")["results"]
    assert item["status"] == "success"
    info = probe(item["file"])
    assert info.video_codec == "h264"
    assert (info.width, info.height) == (128, 128)
    assert info.frames == BASE_REQUEST["duration"] * BASE_REQUEST["fps"]
    assert info.has_audio
    assert info.audio_channels == 2
    assert info.audio_sample_rate == 48000  # LTX-2.3's BWE vocoder rate, as delivered
    assert info.audio_seconds is not None
    assert abs(info.audio_seconds - BASE_REQUEST["duration"]) < 0.1


def test_model_not_served_is_refused_naming_model(ltx23_server: LiveServer) -> None:
    task = video_task(model="lightricks:ltx@2")
    reply = ltx23_server.post([task])
    assert reply.status_code == 400, reply.text
    (error,) = reply.json()["errors"]
    assert error["code"] == "invalidModel"
    assert error["parameter"] == "model"
    assert error["allowedValues"] == ["lightricks:ltx@2.3"]
    assert "lightricks:ltx@2.3" in error["message"]
