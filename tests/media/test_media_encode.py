"""encode_video + probe: real PyAV encodes of small synthetic clips, checked by decoding."""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_samples import LEFT_HZ, RIGHT_HZ, SAMPLE_RATE, gradient_frames, noisy_frames, stereo_sine

import ltxserve.media.encode as encode_module
from ltxserve.media import (
    EncodedVideo,
    EncodeError,
    VideoFormat,
    encode_video,
    encoder_plan,
    probe,
    quality_settings,
)

EXPECTED = {
    # format: (video codec, audio codec, brand, audio rate for 24 kHz input, audio codec frame)
    VideoFormat.MP4: ("h264", "aac", "isom", 24_000, 1024),
    VideoFormat.WEBM: ("vp9", "opus", "webm", 48_000, 960),
    VideoFormat.MOV: ("h264", "aac", "qt", 24_000, 1024),
}


@pytest.fixture(scope="module")
def encoded(
    tmp_path_factory: pytest.TempPathFactory, frames_2s: np.ndarray, audio_2s: np.ndarray
) -> dict[VideoFormat, EncodedVideo]:
    """One 2 s clip with stereo audio per format, shared by the checks below."""
    out = tmp_path_factory.mktemp("encoded")
    return {
        fmt: encode_video(out / f"clip{fmt.extension}", frames_2s, 24, audio_2s, SAMPLE_RATE, fmt, 95)
        for fmt in VideoFormat
    }


@pytest.mark.parametrize("fmt", list(VideoFormat))
def test_encode_then_probe_matches_request(
    fmt: VideoFormat, encoded: dict[VideoFormat, EncodedVideo], audio_2s: np.ndarray
) -> None:
    result = encoded[fmt]
    vcodec, acodec, brand, arate, aframe = EXPECTED[fmt]
    info = probe(result.path)

    assert result.path.suffix == fmt.extension
    assert result.size == result.path.stat().st_size == info.size > 0
    assert (result.num_frames, result.width, result.height, result.fps) == (48, 128, 96, 24)
    assert result.has_audio
    assert result.seconds > 0
    assert result.content_type == fmt.content_type

    assert info.brand == brand
    assert info.video_codec == vcodec
    assert (info.width, info.height, info.pix_fmt) == (128, 96, "yuv420p")
    assert info.colorspace == "bt709"
    assert info.frames == 48
    assert info.fps == Fraction(24)
    assert info.video_seconds == pytest.approx(2.0)

    assert info.audio_codec == acodec
    assert info.audio_channels == 2
    assert info.audio_sample_rate == arate
    assert info.audio_seconds is not None
    one_audio_frame = aframe / arate
    assert abs(info.audio_seconds - audio_2s.shape[1] / SAMPLE_RATE) <= one_audio_frame
    assert abs(info.audio_seconds - info.video_seconds) <= one_audio_frame


@pytest.mark.parametrize("fmt", [VideoFormat.MP4, VideoFormat.MOV])
def test_iso_files_are_faststart(fmt: VideoFormat, encoded: dict[VideoFormat, EncodedVideo]) -> None:
    info = probe(encoded[fmt].path)
    assert info.moov_before_mdat is True
    assert info.boxes[0] == "ftyp"


def test_webm_has_no_moov_notion(encoded: dict[VideoFormat, EncodedVideo]) -> None:
    assert probe(encoded[VideoFormat.WEBM].path).moov_before_mdat is None


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        chunks, rate = [], 0
        for frame in container.decode(audio=0):
            pcm = frame.to_ndarray().astype(np.float64)
            channels = frame.layout.nb_channels
            # planar: (channels, samples); packed: (1, samples * channels) interleaved
            chunks.append(pcm if frame.format.is_planar else pcm.reshape(-1, channels).T)
            rate = frame.sample_rate
    return np.concatenate(chunks, axis=1), rate


@pytest.mark.parametrize("fmt", list(VideoFormat))
def test_audio_channels_keep_their_tones(fmt: VideoFormat, encoded: dict[VideoFormat, EncodedVideo]) -> None:
    pcm, rate = _decode_audio(encoded[fmt].path)
    assert pcm.shape[0] == 2
    for channel, hz in ((0, LEFT_HZ), (1, RIGHT_HZ)):
        signal = pcm[channel, rate // 10 : -rate // 10]  # skip codec edges
        spectrum = np.abs(np.fft.rfft(signal))
        peak = np.fft.rfftfreq(signal.size, 1 / rate)[spectrum.argmax()]
        assert peak == pytest.approx(hz, abs=2.0)
        assert np.sqrt(np.mean(signal**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("fmt", list(VideoFormat))
def test_frames_decode_in_order_with_right_colours(
    fmt: VideoFormat, encoded: dict[VideoFormat, EncodedVideo], frames_2s: np.ndarray
) -> None:
    with av.open(str(encoded[fmt].path)) as container:
        decoded = [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]
    source = frames_2s.astype(np.int16)
    for k in (0, 10, 47):
        error = np.abs(decoded[k] - source[k]).mean()
        assert error < 8, f"frame {k}: mean abs error {error:.1f}"
        for other in (k - 1, k + 1):
            if 0 <= other < len(source):  # each decoded frame is closest to its own source frame
                assert error < np.abs(decoded[k] - source[other]).mean()


@pytest.mark.parametrize("fmt", list(VideoFormat))
def test_audio_is_interleaved_with_video(fmt: VideoFormat, tmp_path: Path) -> None:
    """Sound must be near its picture in the file, or a progressive download starts silent.

    20 s (the longest Runware duration) is past FFmpeg's 10 s interleaving window: left to
    itself the muxer would write ~10 s of video before the first audio packet.
    """
    path = tmp_path / f"long{fmt.extension}"
    encode_video(path, gradient_frames(80, 16, 16), 4, stereo_sine(20.0), SAMPLE_RATE, fmt, 20)
    audio_pos: list[int] = []
    video_pos_after_1s: list[int] = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if not packet.size or packet.dts is None or packet.time_base is None or packet.pos is None:
                continue
            if packet.stream.type == "audio":
                audio_pos.append(packet.pos)
            # decode time: with B-frames a later picture is stored (and decoded) before the ones
            # it precedes in display (3 B-frames at 4 fps: the picture shown at 1 s comes second)
            elif packet.dts * packet.time_base >= 1:
                video_pos_after_1s.append(packet.pos)
    assert audio_pos
    assert video_pos_after_1s
    assert min(audio_pos) < min(video_pos_after_1s), "the file has over 1 s of video before any audio"


@pytest.mark.parametrize("fmt", list(VideoFormat))
def test_no_audio_means_no_audio_stream(fmt: VideoFormat, tmp_path: Path) -> None:
    result = encode_video(tmp_path / f"silent{fmt.extension}", gradient_frames(12, 64, 64), 24, None, 0, fmt)
    assert not result.has_audio
    info = probe(result.path)
    assert info.audio_codec is None
    assert info.audio_seconds is None
    assert not info.has_audio
    assert info.frames == 12
    with av.open(str(result.path)) as container:
        assert len(container.streams.audio) == 0


@pytest.mark.parametrize("fmt", list(VideoFormat))
def test_higher_quality_gives_larger_files(fmt: VideoFormat, tmp_path: Path) -> None:
    frames = noisy_frames(16, 64, 64)
    sizes = [
        encode_video(tmp_path / f"q{q}{fmt.extension}", frames, 24, None, 0, fmt, q).size
        for q in (20, 60, 99)
    ]
    assert sizes[0] < sizes[1] < sizes[2], sizes


def test_quality_mapping_is_monotonic() -> None:
    settings = [quality_settings(q) for q in range(20, 100)]
    for lower, higher in itertools.pairwise(settings):
        assert higher.x264_crf <= lower.x264_crf
        assert higher.vp9_crf <= lower.vp9_crf
        assert higher.aac_bitrate >= lower.aac_bitrate
        assert higher.opus_bitrate >= lower.opus_bitrate
    assert settings[0].x264_crf > settings[-1].x264_crf
    assert settings[0].vp9_crf > settings[-1].vp9_crf
    assert 0 <= settings[-1].x264_crf < settings[0].x264_crf <= 51
    assert 0 <= settings[-1].vp9_crf < settings[0].vp9_crf <= 63


@pytest.mark.parametrize("bad", [19, 100, -1])
def test_quality_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="quality"):
        quality_settings(bad)


def test_quality_must_be_int() -> None:
    with pytest.raises(TypeError):
        quality_settings(True)
    with pytest.raises(TypeError):
        quality_settings(95.0)  # type: ignore[arg-type]


def test_docstring_table_is_what_the_code_does() -> None:
    """docs/engine.md copies this table; it must not drift from quality_settings."""
    doc = encode_module.__doc__ or ""
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", doc, flags=re.MULTILINE)
    assert len(rows) >= 8
    for q, x264, vp9, aac, opus in rows:
        s = quality_settings(int(q))
        assert (s.x264_crf, s.vp9_crf, s.aac_bitrate // 1000, s.opus_bitrate // 1000) == (
            int(x264),
            int(vp9),
            int(aac),
            int(opus),
        ), f"row for quality {q}"
    assert {int(r[0]) for r in rows} >= {20, 95, 99}


def test_plan_uses_mapped_settings() -> None:
    s = quality_settings(60)
    mp4 = encoder_plan(VideoFormat.MP4, 60, 24_000)
    assert (mp4.video_codec, mp4.video_options["crf"]) == ("libx264", str(s.x264_crf))
    assert mp4.muxer_options == {"movflags": "+faststart"}
    assert (mp4.audio_codec, mp4.audio_bitrate, mp4.audio_rate) == ("aac", s.aac_bitrate, 24_000)
    webm = encoder_plan(VideoFormat.WEBM, 60, 24_000)
    assert webm.video_codec == "libvpx-vp9"
    assert (webm.video_options["crf"], webm.video_options["b"]) == (str(s.vp9_crf), "0")
    assert (webm.audio_codec, webm.audio_bitrate, webm.audio_rate) == ("libopus", s.opus_bitrate, 48_000)
    mov = encoder_plan(VideoFormat.MOV, 60, 24_000)
    assert (mov.muxer, mov.video_codec, mov.muxer_options) == ("mov", "libx264", {"movflags": "+faststart"})


@pytest.mark.parametrize("fmt", [VideoFormat.MP4, VideoFormat.WEBM])
def test_odd_sizes_are_padded_to_even(fmt: VideoFormat, tmp_path: Path) -> None:
    frames = gradient_frames(6, 27, 33)
    result = encode_video(tmp_path / f"odd{fmt.extension}", frames, 24, None, 0, fmt)
    assert (result.width, result.height) == (34, 28)
    info = probe(result.path)
    assert (info.width, info.height, info.frames) == (34, 28, 6)


@pytest.mark.parametrize("fmt", [VideoFormat.MP4, VideoFormat.WEBM])
@pytest.mark.parametrize(("fps", "num_frames"), [(1, 3), (30, 31), (120, 30)])
def test_frame_rate_and_count_are_exact(fmt: VideoFormat, fps: int, num_frames: int, tmp_path: Path) -> None:
    seconds = num_frames / fps
    audio = stereo_sine(seconds)
    result = encode_video(
        tmp_path / f"r{fps}{fmt.extension}", gradient_frames(num_frames, 32, 32), fps, audio, SAMPLE_RATE, fmt
    )
    info = probe(result.path)
    assert info.frames == num_frames
    assert info.fps == Fraction(fps)
    assert info.video_seconds == pytest.approx(seconds)
    _, _, _, arate, aframe = EXPECTED[fmt]
    assert info.audio_seconds == pytest.approx(seconds, abs=aframe / arate)


@pytest.mark.parametrize(
    ("fmt", "rate", "expected_rate"),
    [
        (VideoFormat.MP4, 22_050, 22_050),  # an AAC rate: kept
        (VideoFormat.MP4, 23_000, 48_000),  # not an AAC rate: resampled
        (VideoFormat.WEBM, 16_000, 48_000),  # Opus always 48 kHz
    ],
)
def test_mono_and_unusual_rates(fmt: VideoFormat, rate: int, expected_rate: int, tmp_path: Path) -> None:
    mono = stereo_sine(1.0, rate)[:1]
    path = tmp_path / f"m{rate}{fmt.extension}"
    result = encode_video(path, gradient_frames(24, 32, 32), 24, mono, rate, fmt)
    info = probe(result.path)
    assert (info.audio_channels, info.audio_sample_rate) == (1, expected_rate)
    assert info.audio_seconds == pytest.approx(1.0, abs=1024 / expected_rate)


def test_audio_length_is_independent_of_video(tmp_path: Path) -> None:
    """The audio track keeps its own duration (the engine decides lengths, not the encoder)."""
    result = encode_video(
        tmp_path / "long_audio.mp4", gradient_frames(24, 32, 32), 24, stereo_sine(1.5), SAMPLE_RATE
    )
    info = probe(result.path)
    assert info.video_seconds == pytest.approx(1.0)
    assert info.audio_seconds == pytest.approx(1.5, abs=1024 / SAMPLE_RATE)


def test_out_of_range_audio_is_clipped_not_wrapped(tmp_path: Path) -> None:
    loud = stereo_sine(1.0) * 4  # peaks at 2.0
    loud[0, 100] = np.nan
    result = encode_video(tmp_path / "loud.mp4", gradient_frames(24, 32, 32), 24, loud, SAMPLE_RATE)
    pcm, _ = _decode_audio(result.path)
    assert np.isfinite(pcm).all()
    assert np.abs(pcm).max() < 1.3  # AAC overshoots a little around a clipped square-ish wave


_OK = np.zeros((2, 16, 16, 3), np.uint8)


@pytest.mark.parametrize(
    ("frames", "fps", "audio", "rate", "quality", "error", "match"),
    [
        (np.zeros((2, 16, 16, 3), np.float32), 24, None, 0, 95, ValueError, "uint8"),
        (np.zeros((2, 16, 16), np.uint8), 24, None, 0, 95, ValueError, "shape"),
        (np.zeros((0, 16, 16, 3), np.uint8), 24, None, 0, 95, ValueError, "at least one"),
        ([[0]], 24, None, 0, 95, TypeError, "numpy"),
        (_OK, 0, None, 0, 95, ValueError, "fps"),
        (_OK, 121, None, 0, 95, ValueError, "fps"),
        (_OK, 24.0, None, 0, 95, ValueError, "fps"),
        (_OK, 24, None, 0, 19, ValueError, "quality"),
        (_OK, 24, None, 0, 100, ValueError, "quality"),
        (_OK, 24, np.zeros((100, 2), np.float32), 24_000, 95, ValueError, "transposed"),
        (_OK, 24, np.zeros((3, 100), np.float32), 24_000, 95, ValueError, "channels"),
        (_OK, 24, np.zeros((2, 0), np.float32), 24_000, 95, ValueError, "None"),
        (_OK, 24, np.zeros((2, 100), np.int16), 24_000, 95, ValueError, "floating"),
        (_OK, 24, np.zeros((2, 100), np.float32), 0, 95, ValueError, "sample_rate"),
    ],
)
def test_bad_arguments_fail_clearly_and_write_nothing(
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None,
    rate: int,
    quality: int,
    error: type[Exception],
    match: str,
    tmp_path: Path,
) -> None:
    with pytest.raises(error, match=match):
        encode_video(tmp_path / "x.mp4", frames, fps, audio, rate, VideoFormat.MP4, quality)
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_becomes_encode_error(tmp_path: Path) -> None:
    with pytest.raises(EncodeError, match="MP4"):
        encode_video(tmp_path / "missing-dir" / "x.mp4", gradient_frames(2, 16, 16), 24, None, 0)


def test_output_appears_atomically_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    result = encode_video(target, gradient_frames(4, 16, 16), 24, None, 0, "MP4")
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no leftover partial file
    assert probe(result.path).frames == 4


def test_video_format_helpers() -> None:
    assert [f.value for f in VideoFormat] == ["MP4", "WEBM", "MOV"]
    assert [f.extension for f in VideoFormat] == [".mp4", ".webm", ".mov"]
    assert [f.content_type for f in VideoFormat] == ["video/mp4", "video/webm", "video/quicktime"]
    assert VideoFormat.parse("mp4") is VideoFormat.MP4
    assert VideoFormat.parse(".mov") is VideoFormat.MOV
    assert VideoFormat.parse(" WebM ") is VideoFormat.WEBM
    assert VideoFormat("MOV") == "MOV"
    with pytest.raises(ValueError, match="allowed: MP4, WEBM, MOV"):
        VideoFormat.parse("gif")
