"""Uploaded images (``imageUpload``): usable by their imageUUID, for the same API key only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ltxserve.db.database import Database
from ltxserve.db.models import Upload, utcnow

#: pg_advisory_xact_lock id serializing uploads cluster-wide while they count and insert.
UPLOAD_LOCK_ID = 0x6C7478_0002


@dataclass(frozen=True)
class UploadQuota:
    """Uploads one key may make per minute, and bytes its unexpired uploads may hold."""

    per_minute: int
    bytes: int


class QuotaReached(Exception):
    """An upload over ``UploadQuota``; ``which`` is ``per_minute`` or ``bytes``."""

    def __init__(self, which: str, limit: int) -> None:
        super().__init__(f"upload {which} quota {limit} reached")
        self.which = which
        self.limit = limit


class UploadRepository:
    """The ``uploads`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        api_key_id: str,
        image_uuid: str,
        storage_key: str,
        expires_at: datetime,
        size_bytes: int = 0,
        quota: UploadQuota | None = None,
    ) -> Upload:
        """Record an upload; with ``quota`` counted and inserted under the same database lock as
        ``submit`` (``QuotaReached`` when the key is over its uploads per minute or stored bytes)."""
        row = Upload(
            image_uuid=image_uuid,
            api_key_id=api_key_id,
            storage_key=storage_key,
            expires_at=expires_at,
            size_bytes=size_bytes,
        )
        async with self.db.session() as s:
            if quota is not None:
                await self.db.lock(s, UPLOAD_LOCK_ID)
                now = utcnow()
                recent = await s.scalar(
                    select(func.count())
                    .select_from(Upload)
                    .where(Upload.api_key_id == api_key_id, Upload.created_at > now - timedelta(minutes=1))
                )
                if int(recent or 0) >= quota.per_minute:
                    raise QuotaReached("per_minute", quota.per_minute)
                stored = await s.scalar(
                    select(func.coalesce(func.sum(Upload.size_bytes), 0)).where(
                        Upload.api_key_id == api_key_id,
                        (Upload.expires_at.is_(None)) | (Upload.expires_at > now),
                    )
                )
                if int(stored or 0) + size_bytes > quota.bytes:
                    raise QuotaReached("bytes", quota.bytes)
            s.add(row)
        return row

    async def get(self, api_key_id: str, image_uuid: str) -> Upload | None:
        """The key's own, unexpired upload (None otherwise: another key's looks like none)."""
        async with self.db.sessions() as s:
            row = await s.get(Upload, image_uuid)
        if row is None or row.api_key_id != api_key_id:
            return None
        if row.expires_at is not None and row.expires_at < utcnow():
            return None
        return row

    async def expired(self, now: datetime | None = None, limit: int = 500) -> list[Upload]:
        """Uploads past their expiry (the sweeper deletes their files, then the rows)."""
        async with self.db.sessions() as s:
            rows = await s.scalars(select(Upload).where(Upload.expires_at < (now or utcnow())).limit(limit))
            return list(rows.all())

    async def delete(self, image_uuid: str) -> None:
        """Forget an upload (its file is deleted by the caller)."""
        async with self.db.session() as s:
            row = await s.get(Upload, image_uuid)
            if row is not None:
                await s.delete(row)
