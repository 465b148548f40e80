"""Deliver webhooks and uploads from the ``deliveries`` table, with persisted retries.

Each delivery row is made once per result (webhook: the result item, fixed at that moment;
upload: the stored file). A loop in every serving process claims due rows under a short
lease, sends, and records the outcome, so a restart in the middle of the retry window still
delivers and two processes never send the same attempt. Retries back off exponentially with
full jitter, up to ``delivery_window_s`` after the row was made. Webhooks are signed with
Standard Webhooks headers (the ``standardwebhooks`` package); every attempt of one delivery
has the same ``webhook-id`` and a fresh timestamp/signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from datetime import datetime, timedelta
from typing import Any

from standardwebhooks import Webhook

from ltxserve import metrics, tracing
from ltxserve.blobs.base import BlobNotFound, BlobStore
from ltxserve.config import Settings
from ltxserve.db.models import Delivery, utcnow
from ltxserve.db.repository import Store
from ltxserve.logs import get_logger
from ltxserve.net import BadStatus, FetchError, SafeHttpClient

log = get_logger(__name__)

BASE_DELAY_S = 1.0
MAX_DELAY_S = 120.0
CLAIM_LEASE_S = 60.0


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: full jitter over 1, 2, 4, ... capped at 2 min."""
    ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def webhook_body(item: dict[str, Any], envelope: str, *, error: bool = False) -> str:
    """The POST body for one result: the item itself (``flat``), or the item in the same
    envelope a getResponse reply would use (``{"data": [item]}`` / ``{"errors": [item]}``)."""
    body = item if envelope == "flat" else {"errors" if error else "data": [item]}
    return json.dumps(body, separators=(",", ":"))


def retryable(exc: FetchError) -> bool:
    """Timeouts, connection failures and 5xx/408/429 are worth another try; a 4xx is not."""
    if isinstance(exc, BadStatus):
        return exc.status >= 500 or exc.status in (408, 425, 429)
    return True


class Deliverer:
    def __init__(self, settings: Settings, store: Store, blobs: BlobStore, client: SafeHttpClient) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.client = client
        self.wakeup = asyncio.Event()

    def wake(self) -> None:
        self.wakeup.set()

    async def enqueue(
        self,
        *,
        task_id: str,
        result_id: str,
        kind: str,
        url: str,
        body: str | None = None,
        blob_key: str | None = None,
        content_type: str | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> None:
        now = utcnow()
        row = Delivery(
            trace_context=trace_context,
            task_id=task_id,
            result_id=result_id,
            kind=kind,
            url=url,
            body=body,
            blob_key=blob_key,
            content_type=content_type,
            next_attempt_at=now,
            deadline=now + timedelta(seconds=self.settings.delivery_window_s),
        )
        if await self.store.deliveries.add(row):
            self.wake()

    async def run(self) -> None:
        while True:
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("delivery loop failed")
                sent = 0
            if not sent:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), timeout=0.5)

    async def run_once(self) -> int:
        due = await self.store.deliveries.claim(CLAIM_LEASE_S)
        if due:
            await asyncio.gather(*(self.attempt(d) for d in due))
        return len(due)

    async def attempt(self, d: Delivery) -> None:
        """One attempt, as a span of the task's trace (``webhook`` or ``upload``)."""
        with tracing.span(d.kind, tracing.parent(d.trace_context), delivery__attempt=d.attempts) as span:
            outcome = await self._attempt(d)
            span.set_attribute("delivery.outcome", outcome)

    async def _attempt(self, d: Delivery) -> str:
        dlog = log.bind(delivery_id=d.id, task_id=d.task_id, kind=d.kind, attempt=d.attempts)
        try:
            if d.kind == "webhook":
                await self._post_webhook(d)
            else:
                await self._put_upload(d)
        except (FetchError, BlobNotFound) as exc:
            reason = str(exc)
            now = utcnow()
            at = now + timedelta(seconds=backoff_delay(d.attempts))
            if isinstance(exc, FetchError) and retryable(exc) and at < d.deadline:
                dlog.warning("delivery failed, will retry", error=reason, retry_at=at.isoformat())
                metrics.DELIVERIES.labels(d.kind, "retry").inc()
                await self.store.deliveries.retry(d.id, at, reason)
                return "retry"
            dlog.error("delivery gave up", error=reason, url=d.url)
            metrics.DELIVERIES.labels(d.kind, "failed").inc()
            await self.store.deliveries.failed(d.id, reason)
            return "failed"
        except Exception as exc:  # a bug: keep the row retryable, and say so loudly
            dlog.exception("delivery attempt crashed")
            metrics.DELIVERIES.labels(d.kind, "retry").inc()
            await self.store.deliveries.retry(
                d.id, utcnow() + timedelta(seconds=backoff_delay(d.attempts)), repr(exc)
            )
            return "retry"
        dlog.info("delivered", url=d.url)
        metrics.DELIVERIES.labels(d.kind, "delivered").inc()
        await self.store.deliveries.done(d.id)
        return "delivered"

    async def _post_webhook(self, d: Delivery) -> None:
        assert d.body is not None
        headers = {"webhook-id": d.id, **tracing.outgoing()}
        secret = await self._secret(d.task_id)
        timestamp: datetime = utcnow()
        headers["webhook-timestamp"] = str(int(timestamp.timestamp()))
        if secret:
            headers["webhook-signature"] = Webhook(secret).sign(d.id, timestamp, d.body)
        await self.client.post_json(
            d.url, d.body.encode(), headers, timeout_s=self.settings.delivery_timeout_s
        )

    async def _put_upload(self, d: Delivery) -> None:
        assert d.blob_key is not None
        data = await self.blobs.get_bytes(d.blob_key)
        await self.client.put_bytes(
            d.url,
            data,
            d.content_type or "application/octet-stream",
            timeout_s=self.settings.delivery_timeout_s,
        )

    async def _secret(self, task_id: str) -> str | None:
        task = await self.store.tasks.get(task_id)
        if task is None:
            return None
        key = await self.store.keys.get(task.api_key_id)
        return key.webhook_secret if key is not None else None
