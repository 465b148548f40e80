"""Outbound deliveries (webhook POSTs, uploadEndpoint PUTs): recorded once, claimed under a lease."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ltxserve.db.database import Database
from ltxserve.db.models import Delivery, DeliveryStatus, utcnow


class DeliveryRepository:
    """The ``deliveries`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, delivery: Delivery) -> bool:
        """Record a delivery once per (result, kind); False when it already existed."""
        try:
            async with self.db.session() as s:
                s.add(delivery)
        except IntegrityError:
            return False
        return True

    async def claim(self, lease_s: float, limit: int = 20) -> list[Delivery]:
        """Due deliveries, each pushed ``lease_s`` into the future so no other process sends it."""
        now = utcnow()
        async with self.db.sessions() as s:
            ids = list(
                (
                    await s.scalars(
                        select(Delivery.id)
                        .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
                        .order_by(Delivery.next_attempt_at)
                        .limit(limit)
                    )
                ).all()
            )
        claimed: list[Delivery] = []
        for delivery_id in ids:
            async with self.db.session() as s:
                row = await s.scalar(
                    update(Delivery)
                    .where(
                        Delivery.id == delivery_id,
                        Delivery.status == DeliveryStatus.PENDING,
                        Delivery.next_attempt_at <= now,
                    )
                    .values(next_attempt_at=now + timedelta(seconds=lease_s), attempts=Delivery.attempts + 1)
                    .returning(Delivery)
                )
                if row is not None:
                    claimed.append(row)
        return claimed

    async def done(self, delivery_id: str) -> None:
        """The receiver accepted it."""
        async with self.db.session() as s:
            await s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status=DeliveryStatus.DELIVERED, finished_at=utcnow(), last_error=None)
            )

    async def retry(self, delivery_id: str, at: datetime, error: str) -> None:
        """Try again at ``at`` (the attempt failed with ``error``)."""
        async with self.db.session() as s:
            await s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(next_attempt_at=at, last_error=error)
            )

    async def failed(self, delivery_id: str, error: str) -> None:
        """Give up (out of time, or refused for good)."""
        async with self.db.session() as s:
            await s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status=DeliveryStatus.FAILED, finished_at=utcnow(), last_error=error)
            )

    async def for_task(self, task_id: str) -> list[Delivery]:
        """Every delivery of a task (getResponse reports upload status from them)."""
        async with self.db.sessions() as s:
            rows = await s.scalars(select(Delivery).where(Delivery.task_id == task_id))
            return list(rows.all())
