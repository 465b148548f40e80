"""Input images are hostile: every refusal below must happen, with a reason a client can read."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from ltxserve.media import (
    ImageDecodeError,
    decode_base64,
    decode_image,
    encode_png,
    fit_cover,
    looks_like_base64,
    parse_data_uri,
)

LIMITS = {"max_bytes": 1 << 20, "max_pixels": 1 << 20}


def _bytes(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose IHDR claims ``width`` x ``height`` (CRC recomputed)."""
    png = bytearray(encode_png(Image.new("RGB", (1, 1))))
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


# ---- base64 and data URIs -------------------------------------------------------------------


def test_data_uri_round_trip() -> None:
    payload = encode_png(Image.new("RGB", (5, 4), (10, 20, 30)))
    uri = "data:Image/PNG;base64," + base64.b64encode(payload).decode()
    mime, data = parse_data_uri(uri)
    assert (mime, data) == ("image/png", payload)
    assert decode_image(data, **LIMITS).getpixel((0, 0)) == (10, 20, 30)


def test_data_uri_tolerates_line_breaks_params_and_percent_encoding() -> None:
    payload = bytes(range(256))
    b64 = base64.b64encode(payload).decode()
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    assert parse_data_uri(f"data:image/jpeg;name=x.jpg;base64,{wrapped}") == ("image/jpeg", payload)
    assert parse_data_uri("data:;base64," + b64.replace("+", "%2B").replace("/", "%2F")) == (
        "text/plain",
        payload,
    )


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("image/png;base64,AAAA", "must start with 'data:'"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png,%89PNG", "only base64"),
        ("data:png;base64,AAAA", "type/subtype"),
        ("data:image/png;base64,AA!A", "unexpected character"),
        ("data:image/png;base64,", "empty"),
    ],
)
def test_malformed_data_uris(uri: str, match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match):
        parse_data_uri(uri)


def test_base64_tolerates_missing_padding_whitespace_and_urlsafe() -> None:
    payload = b"\xfb\xff\xfe hello"
    std = base64.b64encode(payload).decode()
    assert decode_base64(std) == payload
    assert decode_base64(std.rstrip("=")) == payload
    assert decode_base64(" " + std[:4] + "\r\n" + std[4:] + "\n") == payload
    assert decode_base64(base64.urlsafe_b64encode(payload).decode().rstrip("=")) == payload


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("QUJD$", "unexpected character"),
        ("QUJDR", "dangling"),
        ("QU=JD", "padding before the end"),
        ("QUJ===", "too much"),
        ("QUJDRA=", "wrong amount"),
        ("ab+c-d", "mixes"),
        ("QUJDé", "unexpected character"),
    ],
)
def test_base64_is_strict(text: str, match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match):
        decode_base64(text)


def test_base64_size_limit_before_decoding() -> None:
    text = base64.b64encode(b"x" * 3000).decode()
    assert len(decode_base64(text, max_bytes=3000)) == 3000
    with pytest.raises(ImageDecodeError, match="limit"):
        decode_base64(text, max_bytes=2999)
    with pytest.raises(ImageDecodeError, match="limit"):
        parse_data_uri("data:image/png;base64," + text, max_bytes=100)


def test_looks_like_base64() -> None:
    png_b64 = base64.b64encode(encode_png(Image.new("RGB", (8, 8)))).decode()
    assert looks_like_base64(png_b64)
    assert looks_like_base64(png_b64.rstrip("="))
    assert looks_like_base64(png_b64[:60] + "\n" + png_b64[60:])
    assert not looks_like_base64("aac49721-1964-481a-ae78-8a4e29b91402")  # a UUID
    assert not looks_like_base64("https://example.com/image.png")
    assert not looks_like_base64("data:image/png;base64," + png_b64)
    assert not looks_like_base64("QUJD")  # too short to be an image
    assert not looks_like_base64("not base64 at all, has spaces and commas!")
    assert not looks_like_base64(png_b64 + "=" * 3)


# ---- decode_image ---------------------------------------------------------------------------


def test_alpha_is_composited_on_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((1, 1), (255, 0, 0, 255))
    image.putpixel((2, 2), (0, 0, 0, 128))
    out = decode_image(_bytes(image, "PNG"), **LIMITS)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 1)) == (255, 0, 0)
    assert all(abs(c - 127) <= 1 for c in out.getpixel((2, 2)))  # type: ignore[union-attr]


def test_palette_transparency_and_grey_alpha() -> None:
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    out = decode_image(_bytes(pal, "PNG", transparency=0), **LIMITS)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (0, 255, 0)
    la = Image.new("LA", (1, 1), (0, 0))
    assert decode_image(_bytes(la, "PNG"), **LIMITS).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grey_keeps_its_level() -> None:
    grey16 = Image.fromarray(np.full((3, 3), 32768, dtype=np.uint16))
    out = decode_image(_bytes(grey16, "PNG"), **LIMITS)
    assert out.getpixel((1, 1)) == (128, 128, 128)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "GIF"])
def test_common_formats_decode(fmt: str) -> None:
    image = Image.new("RGB", (16, 8), (200, 40, 40))
    out = decode_image(_bytes(image, fmt), **LIMITS)
    assert (out.mode, out.size) == ("RGB", (16, 8))
    assert np.abs(np.asarray(out, dtype=int) - (200, 40, 40)).max() <= 12


def test_animated_gif_gives_first_frame() -> None:
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    data = _bytes(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert decode_image(data, **LIMITS).getpixel((4, 4)) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # stored: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = decode_image(_bytes(image, "JPEG", exif=exif, quality=95), **LIMITS)
    assert out.size == (20, 40)
    top, bottom = np.asarray(out)[5, 10], np.asarray(out)[35, 10]
    assert np.abs(top.astype(int) - (255, 0, 0)).max() < 60  # red on top
    assert np.abs(bottom.astype(int) - (0, 0, 255)).max() < 60  # blue at the bottom


def test_oversized_bytes_refused_before_parsing() -> None:
    data = b"\x89PNG" + b"\0" * 5000  # not even a valid image: the size check comes first
    with pytest.raises(ImageDecodeError, match="5004 bytes, more than the 5000-byte limit"):
        decode_image(data, max_bytes=5000, max_pixels=10**6)


def test_pixel_limit_from_header() -> None:
    data = encode_png(Image.new("RGB", (300, 300)))
    assert decode_image(data, max_bytes=10**6, max_pixels=90_000).size == (300, 300)
    with pytest.raises(ImageDecodeError, match=r"300x300 = 90000 pixels, more than the 89999-pixel limit"):
        decode_image(data, max_bytes=10**6, max_pixels=89_999)


def test_bomb_declaring_huge_size_is_refused_without_decoding() -> None:
    # 5000x5000 is under PIL's own limit: our header check must catch it.
    small_lie = _png_declaring(5000, 5000)
    assert len(small_lie) < 100
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        decode_image(small_lie, max_bytes=10**6, max_pixels=10**7)
    # 100000x100000 trips PIL's DecompressionBombError inside Image.open: still ours to report.
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(_png_declaring(100_000, 100_000), max_bytes=10**6, max_pixels=10**12)


def test_real_compressed_bomb_is_refused_quickly() -> None:
    # 81 MP in a few KB; kept under PIL's own 89 MP warning so only our check can refuse it.
    bomb = _bytes(Image.new("1", (9_000, 9_000)), "PNG", optimize=True)
    assert len(bomb) < 100_000
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        decode_image(bomb, max_bytes=10**6, max_pixels=40_000_000)
    assert time.perf_counter() - started < 0.5  # refused from the header, nothing inflated


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images(fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _bytes(Image.fromarray(noise), fmt)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2], **LIMITS)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello, definitely not an image", "unsupported image format"),
        (_bytes(Image.new("RGB", (4, 4)), "TIFF"), "unsupported image format"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image"),
    ],
)
def test_unsupported_or_broken(data: bytes, match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(data, **LIMITS)


def test_png_round_trip_is_lossless() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out = decode_image(encode_png(Image.fromarray(pixels)), **LIMITS)
    assert np.array_equal(np.asarray(out), pixels)


# ---- fit_cover ------------------------------------------------------------------------------


def _bands(size: tuple[int, int], vertical: bool) -> Image.Image:
    """Three equal bands red | green | blue, side by side (vertical) or stacked."""
    w, h = size
    image = Image.new("RGB", size, (0, 255, 0))
    if vertical:
        image.paste((255, 0, 0), (0, 0, w // 3, h))
        image.paste((0, 0, 255), (2 * w // 3, 0, w, h))
    else:
        image.paste((255, 0, 0), (0, 0, w, h // 3))
        image.paste((0, 0, 255), (0, 2 * h // 3, w, h))
    return image


@pytest.mark.parametrize(
    ("source", "vertical", "target"),
    [
        ((300, 100), True, (50, 50)),  # wide source: sides cropped
        ((100, 300), False, (50, 50)),  # tall source: top and bottom cropped
        ((90, 30), True, (64, 64)),  # upscale while cropping
        ((600, 300), False, (200, 33)),  # target wider than source: keep the middle 99 of 300 rows
    ],
)
def test_fit_cover_size_and_centre(source: tuple[int, int], vertical: bool, target: tuple[int, int]) -> None:
    image = _bands(source, vertical)
    out = np.asarray(fit_cover(image, *target)).astype(int)
    assert out.shape == (target[1], target[0], 3)
    inner = out[2:-2, 2:-2]  # keep clear of resampling ringing at the cut
    assert np.abs(inner - (0, 255, 0)).max() <= 40, "crop is not centred"


def test_fit_cover_keeps_aspect() -> None:
    # A circle must stay a circle: equal extent along both axes after covering a wider frame.
    image = Image.new("L", (200, 200), 0)
    yy, xx = np.mgrid[0:200, 0:200]
    image.putdata(((xx - 100) ** 2 + (yy - 100) ** 2 < 60**2).astype(np.uint8).ravel() * 255)
    out = np.asarray(fit_cover(image.convert("RGB"), 160, 80))[..., 0] > 127
    cols, rows = np.flatnonzero(out.any(axis=0)), np.flatnonzero(out.any(axis=1))
    # 200 -> 160 wide (scale 0.8), crop rows 60..140 of 200 scaled: circle 96 px wide, cut vertically
    assert cols[-1] - cols[0] + 1 == pytest.approx(96, abs=2)
    assert (rows[0], rows[-1]) == (0, 79)


def test_fit_cover_rejects_empty_target() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_cover(Image.new("RGB", (4, 4)), 0, 4)
