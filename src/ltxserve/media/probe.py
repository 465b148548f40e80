"""Inspect a video file by decoding it: the ground truth tests use to check what was written.

Counts come from decoding every frame and every audio sample, not from container headers
(which can claim anything), so ``frames`` and ``audio_seconds`` are what a player sees.
Box order (``moov`` before ``mdat``) and the brand are read straight from the file bytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av

_ISO_CONTAINERS = ("mov", "mp4")
#: AVColorSpace values worth naming; others are reported as ``"avcol_spc_<n>"``.
_COLORSPACES = {0: "rgb", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc"}


class ProbeError(ValueError):
    """The file is missing, empty or not decodable media."""


@dataclass(frozen=True)
class ProbeInfo:
    """What one video file holds, as decoded."""

    path: Path
    size: int
    #: FFmpeg demuxer name: ``"mov,mp4,m4a,3gp,3g2,mj2"`` for MP4/MOV, ``"matroska,webm"``
    container: str
    #: ISO-BMFF ``ftyp`` major brand (``"isom"`` MP4, ``"qt"`` QuickTime) or EBML DocType
    #: (``"webm"``); trailing spaces stripped; None when neither is present.
    brand: str | None
    video_codec: str
    width: int
    height: int
    pix_fmt: str | None
    #: YUV matrix tag (``"bt709"``, ``"smpte170m"``, ...); None when the file leaves it unspecified
    colorspace: str | None
    frames: int
    fps: Fraction
    video_seconds: float
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_samples: int | None
    audio_seconds: float | None
    #: MP4/MOV: whether the ``moov`` index precedes ``mdat`` (streamable); None for other containers
    moov_before_mdat: bool | None
    #: top-level ISO-BMFF boxes in file order (``["ftyp", "moov", "mdat"]``); empty otherwise
    boxes: tuple[str, ...] = ()

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def is_iso(self) -> bool:
        return any(name in self.container.split(",") for name in _ISO_CONTAINERS)


def iso_boxes(fh: BinaryIO, limit: int = 64) -> list[str]:
    """Top-level ISO-BMFF box types in order (stops at ``limit`` boxes or a malformed header)."""
    boxes: list[str] = []
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    pos = 0
    while pos + 8 <= end and len(boxes) < limit:
        fh.seek(pos)
        size, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:  # 64-bit largesize follows the type
            (size,) = struct.unpack(">Q", fh.read(8))
            header = 16
        elif size == 0:  # box runs to the end of the file
            size = end - pos
        if size < header:
            break
        boxes.append(kind.decode("latin-1"))
        pos += size
    return boxes


def _iso_brand(fh: BinaryIO) -> str | None:
    fh.seek(0)
    head = fh.read(12)
    if len(head) == 12 and head[4:8] == b"ftyp":
        return head[8:12].decode("latin-1").rstrip()
    return None


def _ebml_doctype(fh: BinaryIO) -> str | None:
    """DocType (``webm``/``matroska``) from the EBML header, which sits in the first bytes."""
    fh.seek(0)
    head = fh.read(64)
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    at = head.find(b"\x42\x82")  # DocType element id
    if at < 0 or at + 3 > len(head):
        return None
    size_byte = head[at + 2]
    if not size_byte & 0x80:  # only the 1-byte size form is used for such a short string
        return None
    size = size_byte & 0x7F
    return head[at + 3 : at + 3 + size].decode("ascii", errors="replace")


def probe(path: str | os.PathLike[str]) -> ProbeInfo:
    """Decode ``path`` fully and report what it holds. Raises ``ProbeError`` if it can't."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ProbeError(f"cannot read {p}: {exc}") from exc
    if size == 0:
        raise ProbeError(f"{p} is empty")

    try:
        video = _probe_video(p)
        audio = _probe_audio(p)
    except av.error.FFmpegError as exc:
        raise ProbeError(f"cannot decode {p}: {exc}") from exc

    container, codec, width, height, pix_fmt, colorspace, frames, fps = video
    with p.open("rb") as fh:
        is_iso = any(name in container.split(",") for name in _ISO_CONTAINERS)
        boxes = tuple(iso_boxes(fh)) if is_iso else ()
        brand = _iso_brand(fh) if is_iso else _ebml_doctype(fh)
    moov_before_mdat: bool | None = None
    if is_iso:
        if "moov" not in boxes or "mdat" not in boxes:
            raise ProbeError(f"{p}: ISO file without moov/mdat boxes ({boxes})")
        moov_before_mdat = boxes.index("moov") < boxes.index("mdat")

    a_codec, a_rate, a_channels, a_samples = audio
    return ProbeInfo(
        path=p,
        size=size,
        container=container,
        brand=brand,
        video_codec=codec,
        width=width,
        height=height,
        pix_fmt=pix_fmt,
        colorspace=colorspace,
        frames=frames,
        fps=fps,
        video_seconds=float(frames / fps),
        audio_codec=a_codec,
        audio_sample_rate=a_rate,
        audio_channels=a_channels,
        audio_samples=a_samples,
        audio_seconds=None if a_samples is None or not a_rate else a_samples / a_rate,
        moov_before_mdat=moov_before_mdat,
        boxes=boxes,
    )


def _colorspace_name(value: int) -> str | None:
    if value == 2:  # AVCOL_SPC_UNSPECIFIED
        return None
    return _COLORSPACES.get(value, f"avcol_spc_{value}")


def _probe_video(p: Path) -> tuple[str, str, int, int, str | None, str | None, int, Fraction]:
    with av.open(str(p)) as container:
        if not container.streams.video:
            raise ProbeError(f"{p} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        frames = 0
        first_pts: int | None = None
        last_pts: int | None = None
        width, height, pix_fmt, colorspace = ctx.width, ctx.height, ctx.pix_fmt, int(ctx.colorspace)
        for frame in container.decode(stream):
            if frames == 0:
                width, height, pix_fmt = frame.width, frame.height, frame.format.name
                colorspace = int(frame.colorspace)
            frames += 1
            if frame.pts is not None:
                first_pts = frame.pts if first_pts is None else min(first_pts, frame.pts)
                last_pts = frame.pts if last_pts is None else max(last_pts, frame.pts)
        if frames == 0:
            raise ProbeError(f"{p}: the video stream decodes to no frames")
        # average_rate is frames/duration as the demuxer saw it; WebM's DefaultDuration and
        # MP4's stts both make it exact. Fall back to the timestamps for odd files.
        rate = stream.average_rate or stream.guessed_rate
        if not rate and frames > 1 and first_pts is not None and last_pts is not None and stream.time_base:
            span = (last_pts - first_pts) * stream.time_base
            rate = Fraction(frames - 1) / span if span else None
        if not rate:
            raise ProbeError(f"{p}: cannot tell the frame rate")
        return (
            container.format.name,
            ctx.name,
            width,
            height,
            pix_fmt,
            _colorspace_name(colorspace),
            frames,
            Fraction(rate),
        )


def _probe_audio(p: Path) -> tuple[str | None, int | None, int | None, int | None]:
    with av.open(str(p)) as container:
        if not container.streams.audio:
            return None, None, None, None
        stream = container.streams.audio[0]
        samples = 0
        rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        for frame in container.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate
            channels = frame.layout.nb_channels
        return stream.codec_context.name, rate, channels, samples
