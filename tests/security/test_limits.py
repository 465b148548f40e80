"""Item 3: the per-key and global task limits hold under concurrent submits, on SQLite and on
the real PostgreSQL.

Before the fix the count and the insert were separate statements: 32 parallel submits from one
key with a limit of 8 got 25-32 accepted. The servers here run without a worker (``serve
--no-worker``), so no task ends during the burst and the right answer is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.scaleout.cluster import pg_available, pg_database
from tests.security.server import Server, running_server, video_task

PER_KEY, QUEUE = 8, 12


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Server]:
    limits = {"LTXSERVE_MAX_ACTIVE_TASKS_PER_KEY": str(PER_KEY), "LTXSERVE_MAX_QUEUE_LENGTH": str(QUEUE)}
    data = tmp_path_factory.mktemp(f"limits-{request.param}")
    if request.param == "sqlite":
        with running_server(data, tiny_model_dir, args=("--no-worker",), **limits) as server:
            yield server
        return
    reason = pg_available()
    if reason is not None:
        pytest.skip(reason)
    with (
        pg_database("ltxserve_sec") as url,
        running_server(
            data, tiny_model_dir, args=("--no-worker",), LTXSERVE_DATABASE_URL=url, **limits
        ) as server,
    ):
        yield server


def burst(server: Server, keys: list[str], per_key: int) -> dict[str, int]:
    """``per_key`` single-task submits for each key, all at once (each from its own address)."""
    jobs = [key for key in keys for _ in range(per_key)]

    def one(key: str) -> int:
        return server.post([video_task()], key=key).status_code

    with ThreadPoolExecutor(len(jobs)) as pool:
        statuses = list(pool.map(one, jobs))
    assert set(statuses) <= {200, 429}, statuses
    return {key: sum(1 for k, s in zip(jobs, statuses, strict=True) if k == key and s == 200) for key in keys}


def test_per_key_limit_is_atomic(api_node: Server) -> None:
    key = api_node.create_key("burst")
    assert burst(api_node, [key], 32) == {key: PER_KEY}


def queue_depth(server: Server) -> int:
    with server.client() as client:
        text = client.get("/metrics").text
    line = next(line for line in text.splitlines() if line.startswith("ltxserve_queue_depth "))
    return int(float(line.split()[1]))


def test_queue_limit_is_atomic(api_node: Server) -> None:
    room = QUEUE - queue_depth(api_node)
    assert 0 < room <= QUEUE
    keys = [api_node.create_key(f"queue{i}") for i in range(3)]
    accepted = burst(api_node, keys, PER_KEY)
    assert sum(accepted.values()) == room
    assert all(n <= PER_KEY for n in accepted.values())
