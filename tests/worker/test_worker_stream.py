"""Streamed encode in the worker: the stored file equals the one encoded after generation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltxserve.engine import Engine
from ltxserve.testing import LiveServer, server_settings, start_server, video_task


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("stream"))
    yield from start_server(settings, engine)


def _stored_files(live: LiveServer, **fields: object) -> list[bytes]:
    task = video_task(**fields)
    assert live.post([task]).status_code == 200
    items = live.wait(task["taskUUID"])["data"]
    assert [i["status"] for i in items] == ["success"] * len(items)
    key = live.call(live.runtime.store.keys.authenticate(live.key))
    row = live.call(live.runtime.store.tasks.find(key.id, task["taskUUID"]))
    return [live.call(live.runtime.blobs.get_bytes(r.storage_key)) for r in row.results]


def test_streamed_and_afterwards_encodes_store_the_same_file(live: LiveServer) -> None:
    worker = live.runtime.worker
    assert worker is not None
    assert worker.settings.stream_encode  # the default
    fields = {"duration": 2, "fps": 12, "seed": 11, "numberResults": 2}
    streamed = _stored_files(live, **fields)
    worker.settings = worker.settings.model_copy(update={"stream_encode": False})
    try:
        afterwards = _stored_files(live, **fields, outputFormat="MP4")
    finally:
        worker.settings = worker.settings.model_copy(update={"stream_encode": True})
    assert len(streamed) == 2
    assert streamed == afterwards
    assert streamed[0] != streamed[1]  # two seeds, two videos


@pytest.mark.parametrize("stream", [True, False])
def test_the_x264_preset_setting_reaches_the_stored_file(live: LiveServer, stream: bool) -> None:
    worker = live.runtime.worker
    assert worker is not None
    original = worker.settings
    worker.settings = original.model_copy(update={"stream_encode": stream, "x264_preset": "ultrafast"})
    try:
        (quick,) = _stored_files(live, duration=1, fps=12, seed=5)
    finally:
        worker.settings = original
    (default,) = _stored_files(live, duration=1, fps=12, seed=5)
    # x264 writes its options into the stream: ultrafast has no B-frames and no mb-tree, auto (lean
    # below 8 cores, fast above) has both
    assert b"bframes=0" in quick
    assert b"mbtree=0" in quick
    assert b"bframes=3" in default
    assert b"mbtree=1" in default
