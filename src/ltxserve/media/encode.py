"""Encode generated frames + audio into MP4, WEBM or MOV with PyAV (in-process FFmpeg).

Why PyAV and not the ``ffmpeg`` binary: no subprocess, no pipe copies, no binary to ship, and
the same libx264/libvpx encoders; ``bench/media.py`` checks we are not slower than the binary.

Formats (Runware ``outputFormat``):

- **MP4**: H.264 (libx264, yuv420p, High profile) + AAC-LC, ``movflags=+faststart`` so the
  ``moov`` index precedes ``mdat`` and browsers start playing before the download ends.
- **WEBM**: VP9 (libvpx-vp9, constant quality: CRF with ``b:v 0``) + Opus. Opus decodes at
  48 kHz whatever it was fed, so audio is resampled to 48 kHz before encoding.
- **MOV**: QuickTime container with the *same* H.264 + AAC streams as MP4, also faststart.
  Why not ProRes: on the bench clip (768x512, 121 frames) ProRes 422 was 18x and 422 HQ 27x
  the bytes of H.264 at outputQuality 95, and its quality knob is a profile, not a continuous
  scale, so ``outputQuality`` could not map onto it consistently with MP4.
  H.264 in ``.mov`` plays everywhere QuickTime files play (macOS/iOS, Premiere, Resolve,
  browsers) and imports into the professional tools MOV is asked for.

Video is converted RGB -> YUV 4:2:0 with the BT.709 matrix (limited range) and tagged BT.709,
so players do not guess BT.601 and shift colours. Timestamps: encoder time base ``1/fps`` and
``pts = frame index``, so the file holds exactly ``F`` frames at exactly ``fps``. Odd widths or
heights (4:2:0 needs even ones) are padded by one replicated edge row/column; the returned
``EncodedVideo`` reports the size actually written. LTX sizes are multiples of 32, never odd.

Audio is muxed interleaved with the video (by timestamp), so a progressive download has sound
from the first second. Its decoded duration equals ``samples / sample_rate`` to within one audio
codec frame (AAC pads the last 1024-sample frame; Opus trims it exactly).

``outputQuality`` (20-99, Runware default 95) maps monotonically onto encoder settings in
``quality_settings`` (piecewise linear between anchors, rounded half up; audio steps in tiers):

| outputQuality | H.264 CRF (MP4, MOV) | VP9 CRF (WEBM) | AAC kbit/s | Opus kbit/s |
|---:|---:|---:|---:|---:|
| 20 | 38 | 50 | 96 | 64 |
| 30 | 35 | 47 | 96 | 64 |
| 40 | 33 | 44 | 96 | 64 |
| 50 | 30 | 41 | 128 | 96 |
| 60 | 28 | 38 | 128 | 96 |
| 70 | 25 | 36 | 128 | 96 |
| 80 | 23 | 33 | 160 | 128 |
| 90 | 20 | 29 | 160 | 128 |
| 95 | 18 | 27 | 192 | 160 |
| 99 | 14 | 20 | 192 | 160 |

Lower CRF = higher quality and larger files (x264 CRF 18 is commonly called visually lossless).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, get_args

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from ltxserve.config import X264Preset

MIN_QUALITY = 20
MAX_QUALITY = 99
DEFAULT_QUALITY = 95
MIN_FPS = 1
MAX_FPS = 120

#: x264 speed/size trade-off on machines with many cores: ``fast`` is ~1.5x quicker than ``medium``
#: at nearly its size.
X264_PRESET = "fast"
#: ... and on small machines (fewer than ``X264_FAST_CORES``), where the encode competes with the
#: model for the same cores: ``lean`` (below), at the same CRF (quality setting).
X264_PRESET_SMALL = "lean"
X264_FAST_CORES = 8
X264_PRESETS: tuple[str, ...] = get_args(X264Preset)
#: ltxserve's ``lean`` x264 settings: ``ultrafast`` (no CABAC, diamond motion search, no sub-
#: partitions, subpel refinement 0) with what keeps smooth content small turned back on: 3 B-frames,
#: macroblock-tree rate control over a 10-frame lookahead and the deblocking filter. Against
#: ``veryfast`` on 2 cores at 768x512, CRF 18 (``bench/media.py --presets``): 0.34x the CPU on
#: noise (the tiny models' output: every coefficient costs bits), 0.43x on moving gradients, 0.74x
#: on a panned photo, for 1.42x, 1.10x and 1.06x the bytes at PSNR within 0.4 dB (``ultrafast``:
#: 5.3x and 2.9x the bytes on gradients and photo). Like ``veryfast`` (B-frames and mb-tree too),
#: this libx264 writes different bytes from run to run for frames whose width is not a multiple of
#: 64 (96 or 160 pixels wide: up to 13 files of 15 encodes); at 128, 384, 512 and 768 pixels, one.
#: The frames themselves never vary.
X264_LEAN = ("ultrafast", "bframes=3:b-adapt=0:mbtree=1:rc-lookahead=10:deblock=0,0")


def x264_options(preset: str) -> dict[str, str]:
    """The libx264 codec options of ``preset`` (an x264 preset name or ``lean``)."""
    if preset == "lean":
        return {"preset": X264_LEAN[0], "x264-params": X264_LEAN[1]}
    return {"preset": preset}


def x264_preset(cores: int | None = None, choice: str = "auto") -> str:
    """The x264 preset: ``choice`` when it names one, else the one for a machine with ``cores``
    CPU cores (default: this one)."""
    if choice != "auto":
        if choice not in X264_PRESETS:
            raise ValueError(f"unknown x264 preset {choice!r}; one of auto, {', '.join(X264_PRESETS)}")
        return choice
    n = cores if cores is not None else (os.cpu_count() or 1)
    return X264_PRESET if n >= X264_FAST_CORES else X264_PRESET_SMALL


#: libvpx-vp9 speed: ``good`` deadline at cpu-used 4 with row multithreading is the usual
#: on-demand web setting (``realtime`` is quicker but much larger at the same CRF).
VP9_DEADLINE = "good"
VP9_CPU_USED = 4

#: AVCOL_* value 1 = BT.709 for primaries, transfer and matrix; AVCOL_RANGE_MPEG = 1 (tv).
_BT709 = 1
_RANGE_TV = 1

#: (outputQuality, CRF) anchors; values between are interpolated linearly.
_X264_CRF_ANCHORS: Sequence[tuple[int, int]] = ((20, 38), (50, 30), (80, 23), (95, 18), (99, 14))
_VP9_CRF_ANCHORS: Sequence[tuple[int, int]] = ((20, 50), (50, 41), (80, 33), (95, 27), (99, 20))
#: (lowest outputQuality of the tier, AAC bit/s, Opus bit/s), highest tier first.
_AUDIO_TIERS: Sequence[tuple[int, int, int]] = (
    (95, 192_000, 160_000),
    (80, 160_000, 128_000),
    (50, 128_000, 96_000),
    (MIN_QUALITY, 96_000, 64_000),
)
_AAC_RATES = frozenset((96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000))
_OPUS_RATE = 48_000


class VideoFormat(StrEnum):
    """Runware ``outputFormat`` values for video."""

    MP4 = "MP4"
    WEBM = "WEBM"
    MOV = "MOV"

    @classmethod
    def parse(cls, value: str) -> VideoFormat:
        """Case-insensitive lookup that also accepts an extension (``"mp4"``, ``".mov"``)."""
        try:
            return cls(value.strip().lstrip(".").upper())
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ValueError(f"unsupported video format {value!r}; allowed: {allowed}") from None

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self]

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]

    @property
    def muxer(self) -> str:
        """FFmpeg muxer name (the container is chosen by name, never by file extension)."""
        return _MUXERS[self]


_EXTENSIONS = {VideoFormat.MP4: ".mp4", VideoFormat.WEBM: ".webm", VideoFormat.MOV: ".mov"}
_CONTENT_TYPES = {
    VideoFormat.MP4: "video/mp4",
    VideoFormat.WEBM: "video/webm",
    VideoFormat.MOV: "video/quicktime",
}
_MUXERS = {VideoFormat.MP4: "mp4", VideoFormat.WEBM: "webm", VideoFormat.MOV: "mov"}


@dataclass(frozen=True)
class QualitySettings:
    """Encoder settings for one ``outputQuality`` value (see the module docstring's table)."""

    quality: int
    x264_crf: int
    vp9_crf: int
    aac_bitrate: int
    opus_bitrate: int


def _interpolate(anchors: Sequence[tuple[int, int]], q: int) -> int:
    for (q0, v0), (q1, v1) in itertools.pairwise(anchors):
        if q0 <= q <= q1:
            return math.floor(v0 + (v1 - v0) * (q - q0) / (q1 - q0) + 0.5)
    raise ValueError(f"quality {q} outside the anchors")  # unreachable after validation


def _check_quality(quality: int) -> None:
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer):
        raise TypeError(f"quality must be an int, got {type(quality).__name__}")
    if not MIN_QUALITY <= quality <= MAX_QUALITY:
        raise ValueError(f"quality must be in {MIN_QUALITY}..{MAX_QUALITY}, got {quality}")


def quality_settings(quality: int) -> QualitySettings:
    """The one place ``outputQuality`` becomes encoder settings; monotonic in ``quality``."""
    _check_quality(quality)
    q = int(quality)
    aac, opus = next((a, o) for lo, a, o in _AUDIO_TIERS if q >= lo)
    return QualitySettings(
        quality=q,
        x264_crf=_interpolate(_X264_CRF_ANCHORS, q),
        vp9_crf=_interpolate(_VP9_CRF_ANCHORS, q),
        aac_bitrate=aac,
        opus_bitrate=opus,
    )


@dataclass(frozen=True)
class EncoderPlan:
    """Everything handed to FFmpeg for one encode; ``bench/media.py`` feeds the same to the CLI."""

    muxer: str
    muxer_options: dict[str, str]
    video_codec: str
    #: codec options exactly as FFmpeg names them (``-<name>:v <value>`` on the CLI)
    video_options: dict[str, str]
    pix_fmt: str
    audio_codec: str
    audio_bitrate: int
    #: output sample rate for an input at ``sample_rate``
    audio_rate: int
    #: frame threading for x264 (FFmpeg CLI's default; PyAV's default, slice threads, is slower)
    thread_type: str = "FRAME"


def encoder_plan(
    fmt: VideoFormat, quality: int, sample_rate: int = 48_000, preset: str | None = None
) -> EncoderPlan:
    """Codec, options and audio rate for ``fmt`` at ``quality`` (input audio at ``sample_rate``).

    ``preset`` is x264's speed preset (default: ``x264_preset()`` for this machine); the quality
    settings (CRF, bitrates) depend on ``quality`` only."""
    fmt = VideoFormat(fmt)
    qs = quality_settings(quality)
    faststart = {"movflags": "+faststart"}
    if fmt is VideoFormat.WEBM:
        return EncoderPlan(
            muxer=fmt.muxer,
            muxer_options={},
            video_codec="libvpx-vp9",
            video_options={
                "crf": str(qs.vp9_crf),
                "b": "0",
                "deadline": VP9_DEADLINE,
                "cpu-used": str(VP9_CPU_USED),
                "row-mt": "1",
            },
            pix_fmt="yuv420p",
            audio_codec="libopus",
            audio_bitrate=qs.opus_bitrate,
            audio_rate=_OPUS_RATE,
        )
    return EncoderPlan(
        muxer=fmt.muxer,
        muxer_options=faststart,
        video_codec="libx264",
        video_options={**x264_options(preset or x264_preset()), "crf": str(qs.x264_crf)},
        pix_fmt="yuv420p",
        audio_codec="aac",
        audio_bitrate=qs.aac_bitrate,
        # AAC-LC has a fixed list of rates; anything else (e.g. 22.05 kHz is listed, 23 kHz not)
        # is resampled to 48 kHz rather than refused.
        audio_rate=sample_rate if sample_rate in _AAC_RATES else 48_000,
    )


@dataclass(frozen=True)
class EncodedVideo:
    """What ``encode_video`` wrote. ``width``/``height`` include any odd-size padding."""

    path: Path
    format: VideoFormat
    size: int
    num_frames: int
    width: int
    height: int
    fps: int
    has_audio: bool
    seconds: float

    @property
    def content_type(self) -> str:
        return self.format.content_type


class EncodeError(RuntimeError):
    """FFmpeg failed while writing the file (the partial file has been removed)."""


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must have shape (F, H, W, 3), got {frames.shape}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"frames must hold at least one 1x1 frame, got {frames.shape}")


def _check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Validated (channels, samples) float32 C-contiguous copy-if-needed in [-1, 1]."""
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"audio must be a numpy array or None, got {type(audio).__name__}")
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape (channels, samples), got {audio.shape}")
    if audio.shape[0] not in (1, 2):
        hint = " (transposed? expected (channels, samples))" if audio.shape[1] in (1, 2) else ""
        raise ValueError(f"audio must have 1 or 2 channels, got shape {audio.shape}{hint}")
    if audio.shape[1] == 0:
        raise ValueError("audio has no samples; pass audio=None for a file without sound")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be floating point in [-1, 1], got {audio.dtype}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    out = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=-1.0)
    # Out-of-range samples would wrap or clip unpredictably inside the encoders.
    return np.ascontiguousarray(np.clip(out, -1.0, 1.0))


def encode_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None,
    sample_rate: int,
    fmt: VideoFormat | str = VideoFormat.MP4,
    quality: int = DEFAULT_QUALITY,
    preset: str | None = None,
) -> EncodedVideo:
    """Write ``frames`` (F, H, W, 3) uint8 RGB and optional ``audio`` (channels, samples) to ``path``.

    ``audio=None`` writes no audio stream at all (not a silent one). The file appears at
    ``path`` only when complete: it is written beside it and renamed, so a reader (storage
    upload, file server) never sees half a file. ``preset``: x264's (``x264_preset()`` if None).
    """
    _check_frames(frames)
    return encode_frames(path, iter(frames), fps, audio, sample_rate, fmt, quality, preset)


def encode_frames(
    path: str | os.PathLike[str],
    frames: Iterator[np.ndarray],
    fps: int,
    audio: np.ndarray | None,
    sample_rate: int,
    fmt: VideoFormat | str = VideoFormat.MP4,
    quality: int = DEFAULT_QUALITY,
    preset: str | None = None,
) -> EncodedVideo:
    """``encode_video`` for frames that arrive one by one (H, W, 3) uint8, all of one size.

    The encoder takes each frame as it comes, so a producer (the chunked decode) and the encoder
    overlap; the bytes written equal ``encode_video`` of the same frames.
    """
    started = time.perf_counter()
    fmt = VideoFormat(fmt)
    if isinstance(fps, bool) or not isinstance(fps, int | np.integer) or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"fps must be an int in {MIN_FPS}..{MAX_FPS}, got {fps!r}")
    fps = int(fps)
    samples = None if audio is None else _check_audio(audio, sample_rate)
    plan = encoder_plan(fmt, quality, int(sample_rate) if samples is not None else 48_000, preset)
    first = next(frames, None)
    if first is None:
        raise ValueError("frames must hold at least one 1x1 frame, got none")
    _check_frames(first[None])
    height, width = (int(n) for n in first.shape[:2])
    pad_h, pad_w = height % 2, width % 2
    out_h, out_w = height + pad_h, width + pad_w
    count = 0

    def rgb() -> Iterator[np.ndarray]:
        nonlocal count
        for frame in itertools.chain([first], frames):
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise ValueError(f"frame {count} is {frame.dtype} {frame.shape}, not uint8 {first.shape}")
            count += 1
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            yield np.ascontiguousarray(frame)

    dest = Path(path)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.partial")  # unique per call
    try:
        _write(tmp, plan, rgb(), out_w, out_h, fps, samples, int(sample_rate))
        os.replace(tmp, dest)
    except av.error.FFmpegError as exc:
        raise EncodeError(f"encoding {fmt} to {dest} failed: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return EncodedVideo(
        path=dest,
        format=fmt,
        size=dest.stat().st_size,
        num_frames=count,
        width=out_w,
        height=out_h,
        fps=fps,
        has_audio=samples is not None,
        seconds=time.perf_counter() - started,
    )


class EncodeAborted(EncodeError):
    """The producer of a streamed encode failed or was cancelled; nothing was written."""


class StreamingEncode:
    """``encode_frames`` in its own thread, fed chunk by chunk while the frames are being made.

    The producer calls ``put`` with (n, H, W, 3) uint8 chunks in order (it must not change them
    afterwards), then ``close``; or ``abort`` on failure. ``result`` waits for the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: int,
        audio: np.ndarray | None,
        sample_rate: int,
        fmt: VideoFormat | str = VideoFormat.MP4,
        quality: int = DEFAULT_QUALITY,
        preset: str | None = None,
    ) -> None:
        self._chunks: queue.SimpleQueue[np.ndarray | BaseException | None] = queue.SimpleQueue()
        self._outcome: EncodedVideo | BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(path, fps, audio, sample_rate, fmt, quality, preset),
            daemon=True,
            name="encode",
        )
        self._thread.start()

    def put(self, chunk: np.ndarray) -> None:
        self._chunks.put(chunk)

    def close(self) -> None:
        self._chunks.put(None)

    def abort(self, reason: BaseException | None = None) -> None:
        self._chunks.put(EncodeAborted(f"streamed encode aborted: {reason!r}"))

    def result(self, timeout: float | None = None) -> EncodedVideo:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the streamed encode is still running")
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome

    def _frames(self) -> Iterator[np.ndarray]:
        while (item := self._chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield from item

    def _run(self, *args: Any) -> None:
        try:
            self._outcome = encode_frames(args[0], self._frames(), *args[1:])
        except BaseException as exc:  # handed to the caller of result()
            self._outcome = exc


def _write(
    path: Path,
    plan: EncoderPlan,
    rgb: Iterator[np.ndarray],
    width: int,
    height: int,
    fps: int,
    audio: np.ndarray | None,
    sample_rate: int,
) -> None:
    with av.open(str(path), mode="w", format=plan.muxer, options=plan.muxer_options) as container:
        vstream = container.add_stream(plan.video_codec, rate=fps, options=plan.video_options)
        if not isinstance(vstream, av.VideoStream):
            raise TypeError(f"{plan.video_codec} is not a video encoder")
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = plan.pix_fmt
        vstream.time_base = Fraction(1, fps)
        vctx = vstream.codec_context
        vctx.thread_count = 0  # auto: one per core, as the FFmpeg CLI does
        vctx.thread_type = plan.thread_type
        vctx.colorspace = _BT709
        vctx.color_primaries = _BT709
        vctx.color_trc = _BT709
        vctx.color_range = _RANGE_TV

        # Audio is encoded in its own thread while the first video frames are encoded; muxing
        # (one thread only) waits for it at the first video packet.
        audio_job: _Background[list[av.Packet]] | None = None
        if audio is not None:
            astream = _add_audio_stream(container, plan, audio.shape[0])
            audio_job = _Background(lambda: _encode_audio(astream, plan, audio, sample_rate))
        pending_audio: list[av.Packet] = []
        audio_at = 0

        def mux_audio_until(seconds: float | None) -> None:
            # Interleave ourselves: FFmpeg's queue forces out up to max_interleave_delta (10 s)
            # of one stream before the other, i.e. 10 s of silent download on a 20 s clip.
            nonlocal audio_at, audio_job, pending_audio
            if audio_job is not None:
                pending_audio, audio_job = audio_job.result(), None
            while audio_at < len(pending_audio):
                packet = pending_audio[audio_at]
                pts, tb = packet.pts, packet.time_base
                if seconds is not None and pts is not None and tb is not None and float(pts * tb) > seconds:
                    return
                container.mux(packet)
                audio_at += 1

        def mux_video(packets: list[av.Packet]) -> None:
            for packet in packets:
                # Read the time before muxing: the muxer takes the packet's contents.
                dts, tb = packet.dts, packet.time_base
                container.mux(packet)
                if dts is not None and tb is not None:
                    mux_audio_until(float(dts * tb))

        frame_tb = Fraction(1, fps)  # not vstream.time_base: the muxer rewrites that (mp4: 1/12288)
        reformatter = VideoReformatter()
        for index, array in enumerate(rgb):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            yuv = reformatter.reformat(
                frame,
                format=plan.pix_fmt,
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
                interpolation=Interpolation.BILINEAR,
            )
            yuv.pts = index
            yuv.time_base = frame_tb
            mux_video(vstream.encode(yuv))
        mux_video(vstream.encode(None))
        mux_audio_until(None)


T = TypeVar("T")


class _Background(Generic[T]):
    """``fn()`` in a thread; ``result`` joins it and re-raises its exception."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="encode-audio")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)


def _add_audio_stream(
    container: av.container.OutputContainer, plan: EncoderPlan, channels: int
) -> av.AudioStream:
    layout = "mono" if channels == 1 else "stereo"
    astream = container.add_stream(plan.audio_codec, rate=plan.audio_rate, layout=layout)
    if not isinstance(astream, av.AudioStream):
        raise TypeError(f"{plan.audio_codec} is not an audio encoder")
    astream.bit_rate = plan.audio_bitrate
    astream.time_base = Fraction(1, plan.audio_rate)
    return astream


def _encode_audio(
    astream: av.AudioStream, plan: EncoderPlan, audio: np.ndarray, sample_rate: int
) -> list[av.Packet]:
    """Encode all audio up front (it is cheap) so it can be interleaved with the video."""
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(audio, format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    frame.time_base = Fraction(1, sample_rate)
    frame.pts = 0
    # PyAV's encode resamples (rate, sample format) and cuts codec-sized frames itself.
    packets = astream.encode(frame)
    packets.extend(astream.encode(None))
    return packets
