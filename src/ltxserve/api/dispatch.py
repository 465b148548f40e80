"""One dispatcher for both transports: a validated task in, reply items or error items out.

REST and WebSocket differ only in how they authenticate and deliver; what a task does, and
how its errors look, is decided here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ltxserve.api.errors import unavailable
from ltxserve.api.guard import AuthThrottle, auth_error
from ltxserve.db.models import ApiKey
from ltxserve.logs import get_logger
from ltxserve.protocol import (
    AuthenticationTask,
    ErrorCode,
    ErrorDetail,
    GetResponseTask,
    ImageUploadTask,
    MediaStorageTask,
    PingTask,
    RunwareError,
    TaskModel,
    VideoInferenceTask,
    authentication_item,
    pong_item,
)
from ltxserve.protocol.models import TaskCancelTask
from ltxserve.service.core import Service

log = get_logger(__name__)

__all__ = ["Dispatcher", "Outcome", "auth_error"]


@dataclass
class Outcome:
    data: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ErrorDetail] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # taskUUIDs of accepted videoInference tasks


class Dispatcher:
    """Runs parsed tasks for either transport through the service and collects reply items."""

    def __init__(self, service: Service, throttle: AuthThrottle | None = None) -> None:
        self.service = service
        self.throttle = throttle

    async def authenticate(self, api_key: str, client: str = "unknown") -> ApiKey:
        """The key's row; failures count against the client's address (``AuthThrottle``)."""
        if self.throttle is not None:
            wait = self.throttle.retry_after(client)
            if wait is not None:
                raise RunwareError(self.throttle.error(client, wait))
        try:
            key = await self.service.authenticate(api_key)
        except Exception as exc:
            detail = unavailable(exc)
            if detail is None:
                raise
            detail.task_type = "authentication"
            raise RunwareError(detail) from exc
        if key is None:
            if self.throttle is not None:
                self.throttle.failed(client)
            raise RunwareError(auth_error(ErrorCode.INVALID_API_KEY, "Invalid API key."))
        return key

    async def run(
        self,
        tasks: list[tuple[TaskModel | None, list[ErrorDetail]]],
        key: ApiKey | None,
        session_uuid: str,
        client: str = "unknown",
    ) -> tuple[Outcome, ApiKey | None]:
        """Handle tasks in order; an authentication task in the batch authenticates the rest
        (a failed one leaves the rest unauthenticated, whatever key came before)."""
        out = Outcome()
        for task, errors in tasks:
            if task is None:
                out.errors.extend(errors)
                continue
            try:
                if isinstance(task, AuthenticationTask):
                    key = None
                    key = await self.authenticate(task.api_key, client)
                    out.data.append(authentication_item(task.connection_session_uuid or session_uuid))
                elif isinstance(task, PingTask):
                    out.data.append(pong_item())
                elif key is None:
                    out.errors.append(self._unauthenticated(task))
                else:
                    await self._task(task, key, out)
            except RunwareError as exc:
                out.errors.extend(exc.errors)
            except Exception as exc:
                uuid = getattr(task, "task_uuid", None)
                detail = unavailable(exc)
                if detail is not None:
                    log.warning("task refused: unavailable", task_uuid=uuid, error=str(exc)[:200])
                    detail.task_type, detail.task_uuid = task.task_type, uuid
                    out.errors.append(detail)
                    continue
                log.exception("task failed unexpectedly", task_uuid=uuid, task_type=task.task_type)
                out.errors.append(
                    ErrorDetail(
                        ErrorCode.INTERNAL_SERVER_ERROR,
                        "The server failed to handle this task; it has been logged.",
                        None,
                        task.task_type,
                        uuid,
                    )
                )
        return out, key

    async def _task(self, task: TaskModel, key: ApiKey, out: Outcome) -> None:
        if isinstance(task, VideoInferenceTask):
            out.data.append(await self.service.submit(key, task))
            out.accepted.append(task.task_uuid)
        elif isinstance(task, GetResponseTask):
            reply = await self.service.results(key, task)
            out.data.extend(reply.data)
            out.errors.extend(reply.errors)
        elif isinstance(task, ImageUploadTask):
            out.data.append(await self.service.upload(key, task))
        elif isinstance(task, MediaStorageTask):
            out.data.append(await self.service.media_storage(key, task))
        elif isinstance(task, TaskCancelTask):
            reply = await self.service.cancel(key, task.task_uuid)
            out.data.extend(reply.data)

    @staticmethod
    def _unauthenticated(task: TaskModel) -> ErrorDetail:
        return ErrorDetail(
            ErrorCode.MISSING_API_KEY,
            "Authenticate first: send an Authorization: Bearer header or an authentication task.",
            "apiKey",
            task.task_type,
            getattr(task, "task_uuid", None),
        )
