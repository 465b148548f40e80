"""The store: one database handle and a repository per aggregate.

``store.tasks`` (tasks and their results: every lifecycle transition), ``store.keys`` (API keys),
``store.uploads`` (uploaded images) and ``store.deliveries`` (webhooks, uploadEndpoint PUTs)
share the engine, its sessions and the job-queue ``enqueue`` hook.
"""

from __future__ import annotations

from ltxserve.db.database import Database, EnqueueHook
from ltxserve.db.deliveries import DeliveryRepository
from ltxserve.db.keys import KeyRepository
from ltxserve.db.tasks import TaskRepository
from ltxserve.db.uploads import UploadRepository


class Store(Database):
    """The database with its repositories (built once per process by ``Runtime``)."""

    def __init__(
        self,
        url: str,
        *,
        enqueue: EnqueueHook | None = None,
        retry_s: float = 30.0,
        auth_cache_s: float = 0.0,
    ) -> None:
        super().__init__(url, enqueue=enqueue, retry_s=retry_s)
        self.tasks = TaskRepository(self)
        self.keys = KeyRepository(self, auth_cache_s=auth_cache_s)
        self.uploads = UploadRepository(self)
        self.deliveries = DeliveryRepository(self)
