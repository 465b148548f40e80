"""API keys: created, listed, revoked, verified; only SHA-256 hashes of keys are stored."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

from sqlalchemy import select, update

from ltxserve.db.database import Database
from ltxserve.db.models import ApiKey, utcnow

KEY_PREFIX = "ltx_"


def new_webhook_secret() -> str:
    """Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def hash_key(key: str) -> str:
    """API keys are 256-bit random tokens, so a plain SHA-256 is a safe at-rest form."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRepository:
    """The ``api_keys`` table, with a short cache of verified keys (``auth_cache_s``)."""

    def __init__(self, db: Database, auth_cache_s: float = 0.0) -> None:
        self.db = db
        # Verified keys are trusted for ``auth_cache_s`` (every REST request authenticates);
        # revoking or rotating in this process forgets them at once, elsewhere within that time.
        self.auth_cache_s = auth_cache_s
        self._auth_cache: dict[str, tuple[float, ApiKey]] = {}

    async def create(self, name: str) -> tuple[ApiKey, str, str]:
        """Return the row, the key and its webhook secret; only hashes of the key are kept."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        secret = new_webhook_secret()
        row = ApiKey(name=name, key_hash=hash_key(key), prefix=key[:10], webhook_secret=secret)
        async with self.db.session() as s:
            s.add(row)
        return row, key, secret

    async def list(self) -> list[ApiKey]:
        """Every key, oldest first (``ltxserve keys list``)."""
        async with self.db.sessions() as s:
            return list((await s.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())

    async def revoke(self, ident: str) -> bool:
        """Revoke by id or by the prefix shown in ``keys list``."""
        self._auth_cache.clear()
        async with self.db.session() as s:
            res = await s.execute(
                update(ApiKey)
                .where((ApiKey.id == ident) | (ApiKey.prefix == ident), ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def authenticate(self, key: str) -> ApiKey | None:
        """The active key row for a secret key (None: unknown or revoked)."""
        digest = hash_key(key)
        cached = self._auth_cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self.db.sessions() as s:
            row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
        if row is not None and self.auth_cache_s > 0:
            self._auth_cache[digest] = (time.monotonic() + self.auth_cache_s, row)
        return row

    async def active_key(self, key_id: str) -> ApiKey | None:
        """The key's current row while it is not revoked, through the same short cache as
        ``authenticate``: an open WebSocket re-checks its key with this before every message."""
        slot = f"id:{key_id}"
        cached = self._auth_cache.get(slot)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self.db.sessions() as s:
            row = await s.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
        if row is not None and self.auth_cache_s > 0:
            self._auth_cache[slot] = (time.monotonic() + self.auth_cache_s, row)
        return row

    async def rotate_webhook_secret(self, ident: str) -> str | None:
        """A new signing secret for the key (by id or prefix); the old one stops working."""
        self._auth_cache.clear()
        secret = new_webhook_secret()
        async with self.db.session() as s:
            res = await s.execute(
                update(ApiKey)
                .where((ApiKey.id == ident) | (ApiKey.prefix == ident), ApiKey.revoked_at.is_(None))
                .values(webhook_secret=secret)
            )
            return secret if res.rowcount else None  # type: ignore[attr-defined]

    async def get(self, key_id: str) -> ApiKey | None:
        """A key row by id (revoked ones included)."""
        async with self.db.sessions() as s:
            return await s.get(ApiKey, key_id)
