"""The narrow interface every blob backend implements (local disk now, S3-compatible for scale-out)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    """Keys are relative paths such as ``videos/<uuid>.mp4``; values are opaque bytes."""

    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get_bytes(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """A path the API can stream from with Range support, or None for remote stores."""
        ...

    async def ping(self) -> None:
        """Raise when the store is unreachable (readiness)."""
        ...
