"""Where output videos and uploaded images live: ``BlobStore`` and its backends."""

from __future__ import annotations

from ltxserve.blobs.base import BlobNotFound, BlobReader, BlobStore, RangeNotSatisfiable, StorageUnavailable
from ltxserve.blobs.local import LocalBlobStore
from ltxserve.config import Settings

__all__ = [
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "LocalBlobStore",
    "RangeNotSatisfiable",
    "StorageUnavailable",
    "build_blob_store",
]


def build_blob_store(settings: Settings) -> BlobStore:
    """``auto``: S3 when a bucket is configured, else files under ``data_dir/files``."""
    backend = settings.storage_backend
    if backend == "auto":
        backend = "s3" if settings.s3_bucket else "local"
    if backend == "s3":
        from ltxserve.blobs.s3 import S3BlobStore

        return S3BlobStore(settings)
    return LocalBlobStore(settings.data_dir / "files")
