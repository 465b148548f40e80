"""Decode input images from the network, which are hostile until proven otherwise.

Order of defences in ``decode_image``: byte limit before parsing; only PNG, JPEG, WEBP, GIF
(first frame) and BMP parsers are tried; the pixel limit is checked on the header's declared
size before any pixel is decoded (a 100-byte PNG can declare 100k x 100k); every parser
failure becomes ``ImageDecodeError`` with a reason a client can act on.

PIL's own ``DecompressionBombError`` (declared size over 2x ``Image.MAX_IMAGE_PIXELS``) is
caught too. Its ``DecompressionBombWarning`` (over 1x) is left as a warning: turning it into an
error needs ``warnings.catch_warnings``, which swaps process-global state and is not thread-safe
on Python 3.11 while decoding runs in worker threads, and a ``max_pixels`` below PIL's 89 MP
(the default setting is 40 MP) refuses every such image right after the header is read anyway.

Transparency is composited on **white**: transparent web images (logos, product cut-outs,
stickers) are drawn for light pages, and on black their dark edges and text vanish.

``fit_cover`` is the first-frame policy for image-to-video: scale to cover the requested
size keeping the aspect ratio, then centre-crop, so the frame is filled without distortion.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import urllib.parse

import numpy as np
from PIL import Image, ImageOps

#: Pillow format names we let parse untrusted bytes (anything else is refused).
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
BACKGROUND = (255, 255, 255)

_B64_CHARS = re.compile(r"[A-Za-z0-9+/]*")
_B64URL_CHARS = re.compile(r"[A-Za-z0-9_-]*")
_ANY_B64_CHARS = re.compile(r"[A-Za-z0-9+/_-]*")
_WHITESPACE = re.compile(r"\s+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LOOKS_B64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
#: shortest string ``looks_like_base64`` accepts: no real image encodes shorter than this.
MIN_BASE64_LENGTH = 16


class ImageDecodeError(ValueError):
    """The input is not an acceptable image; ``str(exc)`` says why, for the client."""


def decode_base64(s: str, *, max_bytes: int | None = None) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, not mixed).

    Tolerates what clients really send: line breaks/whitespace and missing ``=`` padding.
    Rejects anything else (stray characters, padding in the middle, impossible lengths).
    ``max_bytes`` refuses oversized payloads before allocating the decoded bytes.
    """
    if not isinstance(s, str):
        raise ImageDecodeError(f"base64 data must be a string, got {type(s).__name__}")
    compact = _WHITESPACE.sub("", s)
    body = compact.rstrip("=")
    padding = len(compact) - len(body)
    if not body:
        raise ImageDecodeError("empty base64 data")
    if padding > 2:
        raise ImageDecodeError("invalid base64: too much '=' padding")
    if not _ANY_B64_CHARS.fullmatch(body):
        bad = next(c for c in body if not _ANY_B64_CHARS.fullmatch(c))
        if bad == "=":
            raise ImageDecodeError("invalid base64: '=' padding before the end")
        raise ImageDecodeError(f"invalid base64: unexpected character {bad!r}")
    if _B64_CHARS.fullmatch(body):
        altchars = None
    elif _B64URL_CHARS.fullmatch(body):
        altchars = b"-_"
    else:
        raise ImageDecodeError("invalid base64: mixes the standard (+/) and URL-safe (-_) alphabets")
    if len(body) % 4 == 1:
        raise ImageDecodeError("invalid base64: truncated (length leaves a single dangling character)")
    if padding and (len(body) + padding) % 4:
        raise ImageDecodeError("invalid base64: wrong amount of '=' padding")
    decoded_size = len(body) * 3 // 4
    if max_bytes is not None and decoded_size > max_bytes:
        raise ImageDecodeError(f"data is {decoded_size} bytes, more than the {max_bytes}-byte limit")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=altchars, validate=True)
    except binascii.Error as exc:  # the checks above should leave nothing for this
        raise ImageDecodeError(f"invalid base64: {exc}") from exc


def parse_data_uri(s: str, *, max_bytes: int | None = None) -> tuple[str, bytes]:
    """``data:<mime>[;params];base64,<payload>`` -> (lower-case mime, payload bytes).

    Only base64 data URIs are accepted (images are binary). An empty mime is RFC 2397's
    ``text/plain``; the payload may be percent-encoded (RFC 2397 allows it).
    """
    if not isinstance(s, str):
        raise ImageDecodeError(f"data URI must be a string, got {type(s).__name__}")
    text = s.strip()
    if text[:5].lower() != "data:":
        raise ImageDecodeError("not a data URI (must start with 'data:')")
    header, sep, payload = text[5:].partition(",")
    if not sep:
        raise ImageDecodeError("malformed data URI: no ',' between header and data")
    params = [part.strip() for part in header.split(";")]
    if len(params) < 2 or params[-1].lower() != "base64":
        raise ImageDecodeError("only base64 data URIs are supported (expected ';base64,')")
    mime = params[0].lower() or "text/plain"
    if "/" not in mime:
        raise ImageDecodeError(f"malformed data URI: media type {params[0]!r} is not type/subtype")
    if "%" in payload:
        payload = urllib.parse.unquote(payload)
    return mime, decode_base64(payload, max_bytes=max_bytes)


def looks_like_base64(s: str) -> bool:
    """Heuristic: could ``s`` be raw base64 image data (not a URL, UUID or data URI)?

    Cheap shape test only (alphabet, length, padding); decoding decides for sure.
    """
    if not isinstance(s, str):
        return False
    compact = _WHITESPACE.sub("", s)
    if len(compact) < MIN_BASE64_LENGTH or _UUID.fullmatch(compact):
        return False
    if compact[:5].lower() == "data:" or "://" in compact:
        return False
    return _LOOKS_B64.fullmatch(compact) is not None and len(compact.rstrip("=")) % 4 != 1


def _check_limits(max_bytes: int, max_pixels: int) -> None:
    if max_bytes < 1 or max_pixels < 1:
        raise ValueError(f"limits must be positive (max_bytes={max_bytes}, max_pixels={max_pixels})")


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Untrusted bytes -> RGB image (EXIF orientation applied, alpha on white).

    Raises ``ImageDecodeError`` for oversized, unsupported, bomb-like or broken input.
    """
    _check_limits(max_bytes, max_pixels)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageDecodeError(f"image data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageDecodeError("image data is empty")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"image is {len(data)} bytes, more than the {max_bytes}-byte limit")

    try:
        # Image.open only parses the header; `formats` keeps every other parser away.
        image = Image.open(io.BytesIO(bytes(data)), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image dimensions are too large: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        allowed = ", ".join(ALLOWED_FORMATS)
        raise ImageDecodeError(f"unrecognised or unsupported image format (allowed: {allowed})") from exc
    except Exception as exc:  # any parser failure on hostile bytes is the client's bad image
        raise ImageDecodeError(f"cannot read image header: {exc}") from exc

    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageDecodeError(f"image has an empty size {width}x{height}")
        if width * height > max_pixels:
            raise ImageDecodeError(
                f"image is {width}x{height} = {width * height} pixels, more than the {max_pixels}-pixel limit"
            )
        try:
            image.seek(0)  # animated GIF/WEBP: first frame
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return _to_rgb(oriented)
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"image dimensions are too large: {exc}") from exc
        except Exception as exc:  # truncated data raises OSError; others SyntaxError, struct.error...
            raise ImageDecodeError(f"image data is corrupt or truncated: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit/int/float greyscale: Pillow's convert("RGB") clips at 255 (white image).
        arr = np.asarray(image, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        grey = np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), mode="RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image.copy()
    return image.convert("RGB")


def fit_cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale ``image`` to cover ``width`` x ``height`` keeping its aspect, then centre-crop.

    Done as one LANCZOS resample of the centred source box (no second crop, no rounding
    drift); ``reducing_gap`` makes large downscales fast without visible loss.
    """
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    src_w, src_h = image.size
    if src_w < 1 or src_h < 1:
        raise ValueError(f"image has an empty size {src_w}x{src_h}")
    if src_w * height > width * src_h:  # source is wider: use full height, crop the sides
        box_w = src_h * width / height
        left = (src_w - box_w) / 2
        box = (left, 0.0, left + box_w, float(src_h))
    else:  # source is taller (or same aspect): use full width, crop top and bottom
        box_h = src_w * height / width
        top = (src_h - box_h) / 2
        box = (0.0, top, float(src_w), top + box_h)
    if (src_w, src_h) == (width, height):
        return image.copy()
    if image.mode in ("1", "P", "PA"):  # palette modes would be resized with NEAREST
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    return image.resize((width, height), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def image_format(data: bytes) -> str | None:
    """The format name (``JPEG``, ``PNG``, ...) of encoded bytes, from the header only."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            return image.format
    except Exception:
        return None


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of ``image`` (lossless; what we store for the resolved input image)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
