"""Serving stored blobs over HTTP when they are not on this node's disk (S3-compatible storage).

``videoURL`` stays ``{public_base}/files/videos/{uuid}.{ext}`` in every mode: the API node
proxies the object from the bucket, passing ``Range`` through (players seek with 206s), so URLs
are stable, need no client access to the bucket, and die with their result's ``ttl``.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ltxserve.blobs import BlobNotFound, BlobStore, RangeNotSatisfiable, StorageUnavailable

CACHE_CONTROL = "private, max-age=3600"


async def blob_response(blobs: BlobStore, key: str, media_type: str, request: Request) -> Response:
    try:
        reader = await blobs.open(key, request.headers.get("range"))
    except BlobNotFound:
        return Response(status_code=404)
    except RangeNotSatisfiable as exc:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{exc.size}"})
    except StorageUnavailable:
        return Response(status_code=503, headers={"Retry-After": "5"})
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(reader.length),
        "Cache-Control": CACHE_CONTROL,
    }
    if reader.content_range:
        headers["Content-Range"] = reader.content_range
    return StreamingResponse(reader.chunks, status_code=reader.status, headers=headers, media_type=media_type)
