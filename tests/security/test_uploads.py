"""Item 5: ``imageUpload`` cannot fill the disk: quotas per key (uploads per minute, bytes
stored), and images are stored in the validated encoding they came in.

Before the fix 320 uploads in 1.6 s were all accepted and a 4.4 MB JPEG was stored as a
46.8 MB PNG.
"""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import numpy as np
from PIL import Image

from tests.security.server import Server


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A photo-sized JPEG that compresses like a photo would not: noise (PNG of it is far larger)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def upload(server: Server, key: str, data: bytes) -> httpx.Response:
    task = {
        "taskType": "imageUpload",
        "taskUUID": str(uuid.uuid4()),
        "image": base64.b64encode(data).decode(),
    }
    return server.post([task], key=key)


def test_jpeg_is_stored_as_sent(server: Server) -> None:
    key = server.create_key("photos")
    data = jpeg(1024, 768)
    reply = upload(server, key, data)
    assert reply.status_code == 200, reply.text
    url = reply.json()["data"][0]["imageURL"]
    stored = httpx.get(url, timeout=30)
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "image/jpeg"
    assert stored.content == data  # not a PNG many times the size


def test_uploads_per_minute_are_limited(server: Server) -> None:
    key = server.create_key("uploader")
    statuses = [upload(server, key, small_png()) for _ in range(25)]
    assert [r.status_code for r in statuses[:20]] == [200] * 20
    refused = statuses[20]
    assert refused.status_code == 429
    (error,) = refused.json()["errors"]
    assert error["code"] == "rateLimitExceeded"
    assert error["taskType"] == "imageUpload"
    # Another key is not affected.
    assert upload(server, server.create_key("neighbour"), small_png()).status_code == 200


def test_stored_bytes_per_key_are_limited(server: Server) -> None:
    key = server.create_key("hoarder")
    data = jpeg(1400, 1000, seed=1)  # ~1.2 MB; the test server allows 3 MB per key
    assert 1_000_000 < len(data) < 1_500_000
    first, second, third = (upload(server, key, data) for _ in range(3))
    assert first.status_code == second.status_code == 200
    assert third.status_code == 413
    assert [e["code"] for e in third.json()["errors"]] == ["requestTooLarge"]
