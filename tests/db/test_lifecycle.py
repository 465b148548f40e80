"""The task lifecycle: the table, and the store carrying it out on a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ltxserve.db.lifecycle import (
    RESULT_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL,
    IllegalTransition,
    TaskStatus,
    check,
    sources,
)
from ltxserve.db.repository import Store
from ltxserve.db.tasks import NewResult

Q, R, S, E, C = (
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.SUCCESS,
    TaskStatus.ERROR,
    TaskStatus.CANCELLED,
)


def test_terminal_states_have_no_way_out() -> None:
    for table in (TASK_TRANSITIONS, RESULT_TRANSITIONS):
        assert not [pair for pair in table if pair[0] in TERMINAL]


def test_every_open_state_can_end() -> None:
    for state in (Q, R):
        reachable, frontier = {state}, [state]
        while frontier:
            here = frontier.pop()
            for old, new in TASK_TRANSITIONS:
                if old == here and new not in reachable:
                    reachable.add(new)
                    frontier.append(new)
        assert reachable & TERMINAL == TERMINAL


def test_check_and_sources() -> None:
    check(Q, R)
    with pytest.raises(IllegalTransition):
        check(S, R)
    with pytest.raises(IllegalTransition):
        check(Q, S)  # a task is never done without having run
    with pytest.raises(IllegalTransition):
        check(Q, R, RESULT_TRANSITIONS)  # a result does not run on its own
    assert set(sources(Q)) == {R}
    assert set(sources(C)) == {Q, R}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'lifecycle.db'}")
    await store.create_all()
    yield store
    await store.close()


async def _task(store: Store, name: str = "t-1") -> str:
    key, _, _ = await store.keys.create("lifecycle")
    task = await store.tasks.submit(
        key.id, name, "videoInference", {}, [NewResult(1, None), NewResult(2, None)]
    )
    return task.id


async def test_illegal_end_raises_and_changes_nothing(store: Store) -> None:
    task_id = await _task(store)
    with pytest.raises(IllegalTransition):
        await store.tasks.finish_task(task_id, status=S)  # queued -> success
    with pytest.raises(IllegalTransition):
        await store.tasks.fail_result("any", "inferenceError", "x", status=R)
    task = await store.tasks.get(task_id)
    assert task is not None
    assert task.status == Q
    assert [r.status for r in task.results] == [Q, Q]  # the results were rolled back too


async def test_terminal_states_never_change(store: Store) -> None:
    task_id = await _task(store)
    assert await store.tasks.claim("w1", 60.0, task_id=task_id) == task_id
    first = await store.tasks.finish_task(task_id, code="inferenceError", message="failed")
    assert first is not None
    assert first.status == E
    assert [r.status for r in first.results] == [E, E]
    # Every later attempt to move it is a no-op: the first end wins.
    again = await store.tasks.finish_task(task_id, status=C)
    assert again is not None
    assert again.status == E
    assert not await store.tasks.release(task_id, "w1")
    assert await store.tasks.claim("w2", 60.0, task_id=task_id) is None
    cancelled = await store.tasks.request_cancel(task_id)
    assert cancelled is not None
    assert cancelled.status == E
    assert (await store.tasks.recover(max_attempts=1, all_running=True)).failed == []


async def test_cancel_before_running_and_requeue(store: Store) -> None:
    queued = await _task(store, "t-q")
    done = await store.tasks.request_cancel(queued)
    assert done is not None
    assert (done.status, {r.status for r in done.results}) == (C, {C})

    running = await _task(store, "t-r")
    assert await store.tasks.claim("w1", 60.0, task_id=running) == running
    assert await store.tasks.release(running, "w1")  # running -> queued, attempts kept
    task = await store.tasks.get(running)
    assert task is not None
    assert (task.status, task.attempts) == (Q, 1)
