"""The narrow interface every blob backend implements: local disk (embedded) and S3-compatible."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class BlobNotFound(KeyError):
    pass


class StorageUnavailable(OSError):
    """The store did not answer (down, unreachable, 5xx) within the retry window."""


class RangeNotSatisfiable(ValueError):
    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"range outside 0-{size}")


@dataclass
class BlobReader:
    """An open read of (part of) a blob, for proxying it over HTTP with Range support."""

    status: int  # 200 whole object, 206 a range
    size: int  # of the whole object
    length: int  # bytes ``chunks`` yields
    content_range: str | None  # ``bytes a-b/size`` for a 206
    chunks: AsyncIterator[bytes]


class BlobStore(Protocol):
    """Keys are relative paths such as ``videos/<uuid>.mp4``; values are opaque bytes."""

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key`` (replacing it; readers never see half a file)."""

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing it)."""

    async def get_bytes(self, key: str) -> bytes:
        """The whole object; raises ``BlobNotFound``."""

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error (the sweeper may come twice)."""

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""

    def local_path(self, key: str) -> Path | None:
        """A path the API can stream from with Range support, or None for remote stores."""
        ...

    async def open(self, key: str, byte_range: str | None = None) -> BlobReader:
        """Read ``key`` (an HTTP ``Range`` value such as ``bytes=0-99`` selects part of it).

        Raises ``BlobNotFound``, ``RangeNotSatisfiable`` or ``StorageUnavailable``."""
        ...

    async def ping(self) -> None:
        """Raise when the store is unreachable (readiness)."""
        ...


def parse_range(byte_range: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (start, end); None = whole blob.

    One range only (what players send); anything else unparsable is ignored, as RFC 9110 allows.
    """
    if not byte_range or not byte_range.startswith("bytes=") or "," in byte_range:
        return None
    first, _, last = byte_range[6:].strip().partition("-")
    try:
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or start > end or start < 0:
        raise RangeNotSatisfiable(size)
    return start, end
