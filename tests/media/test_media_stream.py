"""Streamed encode: frames fed while they are made give the same file as encoding them afterwards."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from media_samples import SAMPLE_RATE, noisy_frames, stereo_sine

from ltxserve.media import VideoFormat, encode_video
from ltxserve.media.encode import EncodeAborted, StreamingEncode, encoder_plan, x264_preset


@pytest.mark.parametrize("fmt", list(VideoFormat))
def test_streamed_encode_writes_the_same_bytes(fmt: VideoFormat, tmp_path: Path) -> None:
    # 128 wide: x264 with B-frames and mb-tree varies from run to run on narrower frames (X264_LEAN)
    frames = noisy_frames(30, 64, 128)
    audio = stereo_sine(30 / 24)
    whole = encode_video(tmp_path / f"whole{fmt.extension}", frames, 24, audio, SAMPLE_RATE, fmt, 90)
    stream = StreamingEncode(tmp_path / f"stream{fmt.extension}", 24, audio, SAMPLE_RATE, fmt, 90)
    for start in range(0, 30, 7):  # uneven chunks, as a chunked decode hands them over
        stream.put(frames[start : start + 7])
    stream.close()
    streamed = stream.result(timeout=60)
    assert streamed.num_frames == whole.num_frames == 30
    if fmt is not VideoFormat.WEBM:  # Matroska writes a random segment UID: compare the streams
        assert streamed.path.read_bytes() == whole.path.read_bytes()
    assert _decoded(streamed.path) == _decoded(whole.path)


def _decoded(path: Path) -> tuple[bytes, bytes]:
    """Every decoded video frame (RGB) and audio sample, concatenated."""
    video, sound = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            video.append(frame.to_ndarray(format="rgb24").tobytes())
        container.seek(0)
        for aframe in container.decode(audio=0):
            sound.append(aframe.to_ndarray().tobytes())
    assert video
    assert sound
    return b"".join(video), b"".join(sound)


def test_aborted_stream_leaves_no_file(tmp_path: Path) -> None:
    stream = StreamingEncode(tmp_path / "out.mp4", 24, None, SAMPLE_RATE)
    stream.put(noisy_frames(5, 32, 32))
    stream.abort(RuntimeError("generation failed"))
    with pytest.raises(EncodeAborted):
        stream.result(timeout=60)
    assert list(tmp_path.iterdir()) == []


def test_a_frame_of_another_size_is_refused(tmp_path: Path) -> None:
    stream = StreamingEncode(tmp_path / "out.mp4", 24, None, SAMPLE_RATE)
    stream.put(noisy_frames(3, 32, 32))
    stream.put(noisy_frames(1, 32, 48))
    stream.close()
    with pytest.raises(ValueError, match="frame 3"):
        stream.result(timeout=60)
    assert list(tmp_path.iterdir()) == []


def test_preset_follows_the_machine_and_quality_does_not() -> None:
    assert x264_preset(2) == "lean"
    assert x264_preset(7) == "lean"
    assert x264_preset(8) == "fast"
    assert x264_preset(64) == "fast"
    small = encoder_plan(VideoFormat.MP4, 95, preset=x264_preset(2))
    large = encoder_plan(VideoFormat.MP4, 95, preset=x264_preset(64))
    assert small.video_options["crf"] == large.video_options["crf"]
    assert (small.audio_codec, small.audio_bitrate) == (large.audio_codec, large.audio_bitrate)


def _x264_options(path: Path) -> str:
    """The options string x264 writes into the stream (its SEI user data)."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\x00", start)].decode("ascii", "replace")


def test_a_chosen_preset_reaches_the_encoder_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    frames = noisy_frames(9, 64, 96)
    quick = encode_video(
        tmp_path / "u.mp4", frames, 24, None, SAMPLE_RATE, preset=x264_preset(choice="ultrafast")
    )
    stream = StreamingEncode(tmp_path / "v.mp4", 24, None, SAMPLE_RATE, preset=x264_preset(2, choice="auto"))
    stream.put(frames)
    stream.close()
    default = stream.result(timeout=60)
    # ultrafast turns CABAC, the deblocking filter, B-frames and macroblock-tree rate control off;
    # lean (auto on 2 cores) is ultrafast with the last three back on; both at the same CRF
    quick_options, default_options = _x264_options(quick.path), _x264_options(default.path)
    for option in ("cabac=0", "deblock=0", "bframes=0", "mbtree=0", "subme=0", "scenecut=0", "crf=18.0"):
        assert option in quick_options
    for option in ("cabac=0", "deblock=1:0:0", "bframes=3", "b_adapt=0", "mbtree=1", "rc_lookahead=10"):
        assert option in default_options
    assert "crf=18.0" in default_options
    with pytest.raises(ValueError, match="unknown x264 preset 'turbo'"):
        x264_preset(choice="turbo")


def test_the_lean_preset_is_deterministic(tmp_path: Path) -> None:
    """The same frames give the same file (at widths that are multiples of 64: see X264_LEAN)."""
    frames = noisy_frames(30, 64, 128)
    files = {
        encode_video(tmp_path / f"{i}.mp4", frames, 24, None, SAMPLE_RATE, preset="lean").path.read_bytes()
        for i in range(6)
    }
    assert len(files) == 1
