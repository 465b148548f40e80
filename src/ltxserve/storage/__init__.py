"""Where output videos and uploaded images live: ``BlobStore`` and its backends."""

from ltxserve.storage.base import BlobNotFound, BlobStore
from ltxserve.storage.local import LocalBlobStore

__all__ = ["BlobNotFound", "BlobStore", "LocalBlobStore"]
