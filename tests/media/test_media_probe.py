"""probe(): it must also report what is wrong, or other packages' tests prove nothing."""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_samples import gradient_frames

from ltxserve.media import ProbeError, probe
from ltxserve.media.probe import iso_boxes


def _plain_mp4(path: Path, num_frames: int, fps: int, *, faststart: bool) -> None:
    """An MP4 written without our encoder, optionally without faststart (moov at the end)."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i, array in enumerate(gradient_frames(num_frames, 32, 32)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_detects_moov_after_mdat(tmp_path: Path) -> None:
    _plain_mp4(tmp_path / "slow.mp4", 5, 25, faststart=False)
    _plain_mp4(tmp_path / "fast.mp4", 5, 25, faststart=True)
    slow, fast = probe(tmp_path / "slow.mp4"), probe(tmp_path / "fast.mp4")
    assert slow.moov_before_mdat is False
    assert slow.boxes.index("mdat") < slow.boxes.index("moov")
    assert fast.moov_before_mdat is True
    assert (slow.frames, slow.fps, slow.colorspace) == (5, Fraction(25), None)


def test_counts_decoded_frames(tmp_path: Path) -> None:
    _plain_mp4(tmp_path / "seven.mp4", 7, 10, faststart=True)
    info = probe(tmp_path / "seven.mp4")
    assert info.frames == 7
    assert info.video_seconds == pytest.approx(0.7)
    assert info.audio_codec is None


def test_missing_empty_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="cannot read"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ProbeError, match="empty"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"this is not a video" * 100)
    with pytest.raises(ProbeError, match="cannot decode"):
        probe(tmp_path / "junk.mp4")


def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=24_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 24_000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 24_000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(ProbeError, match="no video stream"):
        probe(path)


def test_iso_boxes_handles_large_and_open_ended_sizes() -> None:
    data = struct.pack(">I4s", 16, b"ftyp") + b"isom" + b"\0" * 4
    data += struct.pack(">I4sQ", 1, b"mdat", 24) + b"\0" * 8  # 64-bit size form
    data += struct.pack(">I4s", 0, b"moov") + b"\0" * 5  # size 0: to the end of the file
    assert iso_boxes(io.BytesIO(data)) == ["ftyp", "mdat", "moov"]
    # a corrupt size stops the walk instead of looping forever
    assert iso_boxes(io.BytesIO(struct.pack(">I4s", 3, b"ftyp") + b"\0" * 16)) == []
