"""safety.checkContent / safety.mode through the API, on the real tiny pipeline and real classifier."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    yield from start_server(server_settings(tmp_path_factory.mktemp("safety")), engine)


def test_no_check_never_loads_the_model(live: LiveServer) -> None:
    (item,) = live.wait(live.submit())["data"]
    assert "NSFWContent" not in item
    (item,) = live.wait(live.submit(safety={"checkContent": False, "mode": "none"}))["data"]
    assert "NSFWContent" not in item
    assert live.runtime.worker is not None
    assert not live.runtime.worker.checker.loaded


@pytest.mark.parametrize("safety", [{"checkContent": True}, {"mode": "fast"}, {"mode": "full"}])
def test_checked_results_report_nsfw_flag(live: LiveServer, safety: dict[str, object]) -> None:
    # The tiny model's output is noise, which the classifier scores far below 0.8.
    (item,) = live.wait(live.submit(safety=safety))["data"]
    assert item["NSFWContent"] is False
    assert live.runtime.worker is not None
    assert live.runtime.worker.checker.loaded


def test_flag_and_fail_actions(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Threshold 0: any real score above zero flags the (noise) video; the logic, not the model, is
    # under test here (tests/safety/test_safety_check.py covers the scores themselves).
    monkeypatch.setattr(live.settings, "nsfw_threshold", 0.0)
    (flagged,) = live.wait(live.submit(safety={"mode": "fast"}))["data"]
    assert flagged["NSFWContent"] is True
    assert httpx.get(flagged["videoURL"]).status_code == 200  # flag only: the file stays

    monkeypatch.setattr(live.settings, "nsfw_action", "fail")
    files_before = set((live.settings.data_dir / "files" / "videos").iterdir())
    body = live.wait(live.submit(safety={"mode": "fast"}, numberResults=2))
    assert "data" not in body
    assert [e["code"] for e in body["errors"]] == ["nsfwContentDetected", "nsfwContentDetected"]
    assert all(e["status"] == "error" for e in body["errors"])
    assert set((live.settings.data_dir / "files" / "videos").iterdir()) == files_before
