"""Turn an image input (imageUUID, data URI, base64, URL) into a decoded, limit-checked image.

Images given inline in a videoInference are decoded at submission (a bad image is an
``invalid*`` error before the ack) and stored like an ``imageUpload`` of the same key, so the
persisted task refers to a small imageUUID and the worker never sees client bytes.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from ltxserve.blobs.base import BlobNotFound, BlobStore
from ltxserve.config import Settings
from ltxserve.db.models import ApiKey, utcnow
from ltxserve.db.repository import Store
from ltxserve.media.images import ImageDecodeError, decode_base64, decode_image, encode_png, parse_data_uri
from ltxserve.net.errors import FetchError
from ltxserve.protocol import ErrorDetail, ImageRef, RunwareError, VideoInferenceTask
from ltxserve.protocol.errors import invalid

if TYPE_CHECKING:
    from PIL import Image

    from ltxserve.net import SafeHttpClient


def upload_key(image_uuid: str) -> str:
    return f"uploads/{image_uuid}.png"


def frame_image_parameter(task: VideoInferenceTask) -> str:
    """Dotted path of the first-frame image in whichever shape the client used."""
    if task.inputs is not None and task.inputs.frame_images:
        return "inputs.frameImages[0].image"
    return "frameImages[0].inputImage"


class ImageResolver:
    def __init__(
        self, settings: Settings, store: Store, blobs: BlobStore, fetcher: SafeHttpClient | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.fetcher = fetcher

    async def load(
        self, ref: ImageRef, parameter: str, task_uuid: str, task_type: str, key: ApiKey | None = None
    ) -> Image.Image:
        """Decode ``ref``; every failure is an ``invalid<Param>`` error naming ``parameter``."""

        def fail(reason: str) -> RunwareError:
            return RunwareError(
                ErrorDetail(invalid(parameter), f"{parameter} {reason}", parameter, task_type, task_uuid)
            )

        try:
            if ref.kind == "uuid":
                row = await self.store.get_upload(key.id, ref.value) if key is not None else None
                if row is None:
                    raise fail(f"refers to imageUUID {ref.value}, which this API key has not uploaded")
                try:
                    data = await self.blobs.get_bytes(row.storage_key)
                except BlobNotFound:
                    raise fail(f"refers to imageUUID {ref.value}, which has expired") from None
            elif ref.kind == "data_uri":
                _mime, data = parse_data_uri(ref.value, max_bytes=self.settings.max_image_bytes)
            elif ref.kind == "base64":
                data = decode_base64(ref.value, max_bytes=self.settings.max_image_bytes)
            elif self.fetcher is not None:
                fetched = await self.fetcher.fetch(
                    ref.value,
                    max_bytes=self.settings.max_image_bytes,
                    # the bytes decide: stores often serve images as octet-stream
                    accept_types=("image/*", "application/octet-stream", "binary/octet-stream"),
                )
                data = fetched.content
            else:
                raise fail("is a URL; this server does not fetch image URLs")
            return await asyncio.to_thread(
                decode_image,
                data,
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
            )
        except ImageDecodeError as exc:
            raise fail(f"is not a usable image: {exc}") from None
        except FetchError as exc:
            raise fail(f"could not be fetched: {exc}") from None

    async def save(self, key: ApiKey, image: Image.Image) -> str:
        """Store ``image`` as an upload of ``key`` and return its imageUUID."""
        image_uuid = str(uuid.uuid4())
        data = await asyncio.to_thread(encode_png, image)
        await self.blobs.put_bytes(upload_key(image_uuid), data, "image/png")
        expires = utcnow() + timedelta(seconds=self.settings.upload_ttl_s)
        await self.store.add_upload(key.id, image_uuid, upload_key(image_uuid), expires)
        return image_uuid

    async def load_upload(self, api_key_id: str, image_uuid: str) -> Image.Image:
        """For the worker: the stored first-frame image of a persisted task."""
        row = await self.store.get_upload(api_key_id, image_uuid)
        if row is None:
            raise LookupError(f"upload {image_uuid} is gone")
        data = await self.blobs.get_bytes(row.storage_key)
        return await asyncio.to_thread(
            decode_image,
            data,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
        )
