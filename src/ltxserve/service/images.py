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
from ltxserve.db.uploads import QuotaReached, UploadQuota
from ltxserve.media.images import (
    ImageDecodeError,
    decode_base64,
    decode_image,
    encode_png,
    image_format,
    parse_data_uri,
)
from ltxserve.net.errors import FetchError
from ltxserve.protocol import ErrorCode, ErrorDetail, ImageRef, RunwareError, VideoInferenceTask
from ltxserve.protocol.errors import invalid

if TYPE_CHECKING:
    from PIL import Image

    from ltxserve.net import SafeHttpClient


#: Encodings an upload is stored in as sent (once it decoded): compact, and what browsers show.
KEPT_FORMATS = {"JPEG": (".jpg", "image/jpeg"), "PNG": (".png", "image/png"), "WEBP": (".webp", "image/webp")}


def upload_key(image_uuid: str, extension: str = ".png") -> str:
    """The blob key of an uploaded image."""
    return f"uploads/{image_uuid}{extension}"


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
        image, _ = await self.load_with_source(ref, parameter, task_uuid, task_type, key)
        return image

    async def load_with_source(
        self, ref: ImageRef, parameter: str, task_uuid: str, task_type: str, key: ApiKey | None = None
    ) -> tuple[Image.Image, bytes]:
        """``load``, and the encoded bytes it decoded (kept as they are by ``save``)."""

        def fail(reason: str) -> RunwareError:
            return RunwareError(
                ErrorDetail(invalid(parameter), f"{parameter} {reason}", parameter, task_type, task_uuid)
            )

        try:
            if ref.kind == "uuid":
                row = await self.store.uploads.get(key.id, ref.value) if key is not None else None
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
            image = await asyncio.to_thread(
                decode_image,
                data,
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
            )
            return image, bytes(data)
        except ImageDecodeError as exc:
            raise fail(f"is not a usable image: {exc}") from None
        except FetchError as exc:
            raise fail(f"could not be fetched: {exc}") from None

    async def save(
        self,
        key: ApiKey,
        image: Image.Image,
        source: bytes | None = None,
        task: tuple[str, str] | None = None,
    ) -> tuple[str, str]:
        """Store an upload of ``key``; returns its imageUUID and storage key.

        ``source`` (the bytes ``image`` was decoded from) is kept as it is when it is JPEG, PNG
        or WEBP: re-encoding a photo as PNG made it ~10x larger and cost seconds of CPU. Others
        (GIF, BMP) are stored as PNG. The key's upload quota (per minute, bytes stored) is
        checked with the insert; ``task`` (taskType, taskUUID) names the task in its errors.
        """
        image_uuid = str(uuid.uuid4())
        kept = image_format(source) if source is not None else None
        if source is not None and kept in KEPT_FORMATS:
            extension, content_type = KEPT_FORMATS[kept]
            data = source
        else:
            extension, content_type = ".png", "image/png"
            data = await asyncio.to_thread(encode_png, image)
        storage_key = upload_key(image_uuid, extension)
        expires = utcnow() + timedelta(seconds=self.settings.upload_ttl_s)
        quota = UploadQuota(self.settings.upload_per_minute, self.settings.upload_bytes_per_key)
        try:
            # the row first: a refused upload leaves no file behind
            await self.store.uploads.add(key.id, image_uuid, storage_key, expires, len(data), quota)
        except QuotaReached as exc:
            raise RunwareError(self._quota_error(exc, len(data), task)) from None
        try:
            await self.blobs.put_bytes(storage_key, data, content_type)
        except BaseException:
            await self.store.uploads.delete(image_uuid)
            raise
        return image_uuid, storage_key

    def _quota_error(self, exc: QuotaReached, size: int, task: tuple[str, str] | None) -> ErrorDetail:
        task_type, task_uuid = task or (None, None)
        if exc.which == "per_minute":
            return ErrorDetail(
                ErrorCode.RATE_LIMIT_EXCEEDED,
                f"This API key stored {exc.limit} images in the last minute; wait before uploading more.",
                None,
                task_type,
                task_uuid,
            )
        return ErrorDetail(
            ErrorCode.REQUEST_TOO_LARGE,
            f"This image ({size} bytes) would take this API key's uploads over their {exc.limit}-byte "
            "quota; delete some (mediaStorage) or wait for them to expire.",
            None,
            task_type,
            task_uuid,
        )

    async def load_upload(self, api_key_id: str, image_uuid: str) -> Image.Image:
        """For the worker: the stored first-frame image of a persisted task."""
        row = await self.store.uploads.get(api_key_id, image_uuid)
        if row is None:
            raise LookupError(f"upload {image_uuid} is gone")
        data = await self.blobs.get_bytes(row.storage_key)
        return await asyncio.to_thread(
            decode_image,
            data,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
        )
