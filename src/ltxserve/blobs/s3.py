"""Blobs in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, R2, Ceph RGW).

boto3 is synchronous; every call runs in a thread. Writes are retried with backoff for
``storage_retry_s`` while the store is unreachable or answers 5xx, so a store that is down for a
while delays a result instead of failing it (the worker keeps heartbeating its lease meanwhile).
Reads for the API are tried briefly and answer 503 when the store is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ltxserve.blobs.base import BlobNotFound, BlobReader, RangeNotSatisfiable, StorageUnavailable
from ltxserve.config import Settings
from ltxserve.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = get_logger(__name__)

T = TypeVar("T")
CHUNK = 1 << 20
NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def retryable(exc: Exception) -> bool:
    """Unreachable, timed out, throttled or 5xx: the store may come back. 4xx: it will not."""
    if isinstance(exc, ClientError):
        return _status(exc) >= 500 or _status(exc) in (408, 429)
    return isinstance(exc, (BotoCoreError, OSError))


class S3BlobStore:
    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise ValueError("LTXSERVE_S3_BUCKET is required for S3 storage")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.retry_s = settings.storage_retry_s
        secret = settings.s3_secret_access_key
        self.client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if settings.s3_path_style else "virtual"},
                retries={"max_attempts": 2, "mode": "standard"},  # the long retry is ours, below
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=20,
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def _call(self, what: str, fn: Callable[[], T], window_s: float) -> T:
        """Run a boto3 call in a thread; retry what may succeed later for ``window_s`` seconds."""
        deadline = time.monotonic() + window_s
        delay = 0.25
        while True:
            try:
                return await asyncio.to_thread(fn)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in NOT_FOUND or _status(exc) == 404:
                    raise BlobNotFound(what) from exc
                if not retryable(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailable(f"{what}: {exc}") from exc
                error = str(exc)
            except (BotoCoreError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailable(f"{what}: {exc}") from exc
                error = str(exc)
            log.warning("object store unavailable, retrying", op=what, error=error[:200], retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Upload the file, retried for ``retry_s`` while the store is unreachable."""

        def put() -> None:
            with path.open("rb") as body:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=body, ContentType=content_type
                )

        await self._call(f"put {key}", put, self.retry_s)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Upload ``data``, retried for ``retry_s`` while the store is unreachable."""

        def put() -> None:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            )

        await self._call(f"put {key}", put, self.retry_s)

    async def get_bytes(self, key: str) -> bytes:
        """Download the whole object (retried); raises ``BlobNotFound``."""

        def get() -> bytes:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

        return await self._call(key, get, self.retry_s)

    async def delete(self, key: str) -> None:
        """Delete the object (retried briefly: the sweeper comes back for what it missed)."""

        def delete() -> None:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

        await self._call(f"delete {key}", delete, min(self.retry_s, 10.0))  # the sweeper comes back

    async def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        try:
            await self._call(
                key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)), 5.0
            )
        except BlobNotFound:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        """None: objects are proxied through the API (``api.files.blob_response``)."""
        return None

    async def open(self, key: str, byte_range: str | None = None) -> BlobReader:
        """Stream the object, passing ``Range`` through to the store."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if byte_range and byte_range.startswith("bytes=") and "," not in byte_range:
            kwargs["Range"] = byte_range
        try:
            obj = await self._call(key, lambda: self.client.get_object(**kwargs), 2.0)
        except ClientError as exc:
            if _status(exc) == 416:
                head = await self._call(
                    key, lambda: self.client.head_object(Bucket=self.bucket, Key=kwargs["Key"]), 2.0
                )
                raise RangeNotSatisfiable(head["ContentLength"]) from exc
            raise
        body = obj["Body"]
        content_range = obj.get("ContentRange")
        size = int(content_range.rsplit("/", 1)[1]) if content_range else obj["ContentLength"]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while data := await asyncio.to_thread(body.read, CHUNK):
                    yield data
            finally:
                body.close()

        return BlobReader(
            status=206 if content_range else 200,
            size=size,
            length=obj["ContentLength"],
            content_range=content_range,
            chunks=chunks(),
        )

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the bucket answers."""
        try:
            await self._call("bucket", lambda: self.client.head_bucket(Bucket=self.bucket), 0.0)
        except BlobNotFound as exc:
            raise StorageUnavailable(f"bucket {self.bucket} does not exist") from exc
