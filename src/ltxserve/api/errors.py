"""Exceptions from below the API mapped to error items, for the guard and the dispatcher alike."""

from __future__ import annotations

from ltxserve.blobs import StorageUnavailable
from ltxserve.db.database import is_disconnect
from ltxserve.protocol import ErrorCode, ErrorDetail


def unavailable(exc: BaseException) -> ErrorDetail | None:
    """``serviceUnavailable`` (503) when the database or the blob store cannot be reached: the
    client may retry; None for anything else (a bug: ``internalServerError``)."""
    if is_disconnect(exc):
        return ErrorDetail(ErrorCode.SERVICE_UNAVAILABLE, "The database is unavailable; retry later.")
    if isinstance(exc, StorageUnavailable):
        return ErrorDetail(ErrorCode.SERVICE_UNAVAILABLE, "File storage is unavailable; retry later.")
    return None
