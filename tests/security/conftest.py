"""One real ``ltxserve serve`` per test session for the attacks (tests needing other settings
start their own with ``running_server``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.server import Server, running_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("attacked"), tiny_model_dir) as srv:
        yield srv
