"""``select_frames``: which frames each safety mode scores (pure logic, no model)."""

from __future__ import annotations

import math

import pytest

from ltxserve.safety import select_frames


def test_one_frame() -> None:
    assert select_frames(1, 24, "fast") == [0]
    assert select_frames(1, 24, "full") == [0]


def test_no_frames_and_mode_none() -> None:
    assert select_frames(0, 24, "fast") == []
    assert select_frames(0, 24, "full") == []
    assert select_frames(121, 24, "none") == []


def test_fps_one_checks_every_frame() -> None:
    assert select_frames(7, 1, "fast") == list(range(7)) == select_frames(7, 1, "full")


def test_ltx_clip_lengths() -> None:
    # 121 frames at 24 fps: the last frame is itself the first frame of second 5.
    assert select_frames(121, 24, "fast") == [0, 24, 48, 72, 96, 120]
    assert select_frames(125, 25, "fast") == [0, 25, 50, 75, 100, 124]
    assert select_frames(10, 24, "fast") == [0, 9]


def test_120_fps_for_20_seconds() -> None:
    picks = select_frames(2400, 120, "fast")
    assert picks == [*range(0, 2400, 120), 2399]
    assert len(picks) == 21


def test_full_is_every_frame() -> None:
    assert select_frames(2400, 120, "full") == list(range(2400))


@pytest.mark.parametrize("fps", [1, 2, 5, 24, 25, 30, 50, 60, 120])
@pytest.mark.parametrize("num_frames", [1, 2, 3, 9, 24, 25, 97, 121, 241, 257, 1000])
def test_fast_invariants(num_frames: int, fps: int) -> None:
    picks = select_frames(num_frames, fps, "fast")
    assert picks == sorted(set(picks))
    assert picks[0] == 0
    assert picks[-1] == num_frames - 1
    assert all(0 <= i < num_frames for i in picks)
    seconds = math.ceil(num_frames / fps)
    assert [i for i in picks if i % fps == 0] == [s * fps for s in range(seconds)]
    assert len(picks) in (seconds, seconds + 1)


@pytest.mark.parametrize(
    ("num_frames", "fps", "mode"), [(-1, 24, "fast"), (10, 0, "fast"), (10, 24, "quick"), (0, 24, "all")]
)
def test_invalid_arguments(num_frames: int, fps: int, mode: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        select_frames(num_frames, fps, mode)  # type: ignore[arg-type]
