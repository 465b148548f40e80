"""Blobs as files under one directory (the embedded default).

A put is atomic and durable: the data goes to a ``.part`` file beside the target, is fsynced, is
renamed into place, and the directory is fsynced. Readers never see a half-written file, and a
power loss after a put returned (after the task row says its output or step checkpoint is stored)
cannot leave an empty or truncated file behind the rename.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from ltxserve.blobs.base import BlobNotFound, BlobReader, parse_range

CHUNK = 1 << 20


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise BlobNotFound(key)
        return path

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Hard-link (or, across filesystems, copy) to a ``.part`` file beside the target, fsync it,
        then rename it into place. The caller hands the file over: it must not change it after."""
        await asyncio.to_thread(self._link_or_copy, path, self._path(key))

    @staticmethod
    def _link_or_copy(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        tmp.unlink(missing_ok=True)  # left by an attempt that died here
        try:
            # same filesystem (the worker's temporary files and the data directory, by default):
            # no copy of the file's bytes, only their sync (a 20 MB result: ~10-20 ms less)
            os.link(src, tmp)
        except OSError:
            with src.open("rb") as fin, tmp.open("wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
                fout.flush()
                os.fsync(fout.fileno())
        else:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _publish(tmp, dst)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Write to a ``.part`` file beside the target, fsync it, then rename it into place."""
        dst = self._path(key)

        def write() -> None:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".part")
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            _publish(tmp, dst)

        await asyncio.to_thread(write)

    async def get_bytes(self, key: str) -> bytes:
        """Read the file; raises ``BlobNotFound``."""
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    async def delete(self, key: str) -> None:
        """Unlink the file (missing is fine)."""
        await asyncio.to_thread(self._path(key).unlink, True)

    async def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def local_path(self, key: str) -> Path | None:
        """The file's path (the API serves it with ``FileResponse``); a key that would leave the
        root raises ``BlobNotFound``."""
        return self._path(key)

    async def open(self, key: str, byte_range: str | None = None) -> BlobReader:
        """Stream the file, or the part a ``Range`` asks for."""
        path = self._path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        span = parse_range(byte_range, size)
        start, end = span if span is not None else (0, size - 1)

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                f.seek(start)
                left = end - start + 1
                while left > 0:
                    data = await asyncio.to_thread(f.read, min(CHUNK, left))
                    if not data:
                        return
                    left -= len(data)
                    yield data

        return BlobReader(
            status=206 if span is not None else 200,
            size=size,
            length=end - start + 1,
            content_range=f"bytes {start}-{end}/{size}" if span is not None else None,
            chunks=chunks(),
        )

    async def ping(self) -> None:
        """Raise unless the storage directory is writable."""
        if not os.access(self.root, os.W_OK):
            raise OSError(f"storage directory {self.root} is not writable")


def _publish(tmp: Path, dst: Path) -> None:
    """Rename the synced ``tmp`` over ``dst`` (readers never see a half-written file), then fsync
    the directory so that the rename itself survives a power loss."""
    os.replace(tmp, dst)
    fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
