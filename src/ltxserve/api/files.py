"""Serving stored blobs over HTTP when they are not on this node's disk (S3-compatible storage).

``videoURL`` stays ``{public_base}/files/videos/{uuid}.{ext}`` in every mode: the API node
proxies the object from the bucket, passing ``Range`` through (players seek with 206s), so URLs
are stable, need no client access to the bucket, and die with their result's ``ttl``.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from ltxserve.api.prelude import runtime
from ltxserve.blobs import BlobNotFound, BlobStore, RangeNotSatisfiable, StorageUnavailable

CACHE_CONTROL = "private, max-age=3600"
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
}

router = APIRouter(include_in_schema=False)


#: The only names ltxserve gives files: a folder, a UUID, a known extension. Anything else (NUL
#: bytes, over-long or nested names, traversal) is answered 404 before it reaches a filesystem.
FILE_NAME = re.compile(
    r"(?:videos|uploads)/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.[a-z0-9]{3,4})"
)


@router.api_route("/files/{key:path}", methods=["GET", "HEAD"])
async def files(key: str, request: Request) -> Response:
    """A result video or an uploaded image: from local disk, or proxied from object storage."""
    match = FILE_NAME.fullmatch(key)
    suffix = match.group(1) if match else ""
    if suffix not in CONTENT_TYPES:
        return Response(status_code=404)
    blobs = runtime(request).blobs
    try:
        path = blobs.local_path(key)
    except BlobNotFound:
        return Response(status_code=404)
    if path is None:  # object storage: proxied from the bucket, Range passed through
        return await blob_response(blobs, key, CONTENT_TYPES[suffix], request)
    if not path.is_file():
        return Response(status_code=404)
    return FileResponse(path, media_type=CONTENT_TYPES[suffix], headers={"Cache-Control": CACHE_CONTROL})


async def blob_response(blobs: BlobStore, key: str, media_type: str, request: Request) -> Response:
    """Stream one object, honouring ``Range`` (206/416) and mapping an outage to 503."""
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
