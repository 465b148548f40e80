"""Every state a task (and each of its results) can be in, and every way between them.

This is the one place that says how a task lives (cog's ``runner.py`` model): the states are an
Enum, the allowed transitions a table, and ``check`` raises ``IllegalTransition`` for anything
else. The transitions themselves run in ``ltxserve.db.tasks.TaskRepository``, one transaction
each, stamped with a time, guarded in SQL by ``sources(...)`` of this table, so two processes
racing for the same task move it once. Terminal states have no way out: ending a task that has
already ended returns it unchanged (the first end wins), it never changes it.

::

    submit ──> queued ──claim──> running ──finish──> success | error
                 │  ^               │  │
                 │  └──release──────┘  └──cancel / give up──> cancelled | error
                 │     (attempt failed, lease ran out)
                 └──cancel──> cancelled

A result row (one per ``numberResults``) only ends: ``queued`` -> ``success`` when its file is
stored, ``error`` (or ``cancelled``) when it fails or its task ends without it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class TaskStatus(StrEnum):
    """A task's (or a result's) state, stored as its string value."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"


Q, R = TaskStatus.QUEUED, TaskStatus.RUNNING
S, E, C = TaskStatus.SUCCESS, TaskStatus.ERROR, TaskStatus.CANCELLED

#: States nothing leaves.
TERMINAL: Final = frozenset({S, E, C})
#: States that count against the queue and per-key limits.
ACTIVE: Final = (Q, R)

#: Every allowed task transition and what makes it (the ``TaskRepository`` method).
TASK_TRANSITIONS: Final[dict[tuple[TaskStatus, TaskStatus], str]] = {
    (Q, R): "claim: a worker takes the task under a lease (one more attempt counted)",
    (Q, C): "request_cancel: the client cancels before any worker took it",
    (R, Q): "release / recover: the attempt failed, or its worker stopped heartbeating",
    (R, S): "finish_task: the attempt ended with at least one result stored",
    (R, E): "finish_task: no result stored, the capacity check refused it, or attempts ran out",
    (R, C): "finish_task: the worker stopped at the client's request",
}

#: Every allowed result transition (a result is never running on its own).
RESULT_TRANSITIONS: Final[dict[tuple[TaskStatus, TaskStatus], str]] = {
    (Q, S): "finish_result: its file is stored",
    (Q, E): "fail_result / finish_task: it failed (NSFW with nsfw_action=fail) or its task ended",
    (Q, C): "finish_task: its task was cancelled",
}


class IllegalTransition(RuntimeError):
    """A transition the table does not allow (a bug, or a task that moved on meanwhile)."""

    def __init__(self, old: str, new: str, what: str = "task") -> None:
        super().__init__(f"illegal {what} transition {old} -> {new}")
        self.old, self.new = old, new


def check(old: str, new: str, table: dict[tuple[TaskStatus, TaskStatus], str] = TASK_TRANSITIONS) -> None:
    """Raise ``IllegalTransition`` unless ``old -> new`` is in ``table``."""
    if (TaskStatus(old), TaskStatus(new)) not in table:
        raise IllegalTransition(old, new, "task" if table is TASK_TRANSITIONS else "result")


def sources(
    new: TaskStatus, table: dict[tuple[TaskStatus, TaskStatus], str] = TASK_TRANSITIONS
) -> tuple[TaskStatus, ...]:
    """The states ``new`` may be reached from: the guard of the SQL update that makes it."""
    return tuple(old for (old, to) in table if to == new)


def is_terminal(status: str) -> bool:
    """Whether ``status`` is an end state (nothing changes it any more)."""
    return status in TERMINAL
