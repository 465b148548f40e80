"""Which frames of a video to check, and the verdict that becomes Runware's ``NSFWContent``.

Runware's contract says only ``fast`` "checks key frames" and ``full`` "checks all frames". A
generated clip has no codec key frames yet (we check before encoding), so ``fast`` is defined
here as **one frame per second of video, the first frame of each second (indices 0, fps,
2*fps, ...), plus the last frame**, deduplicated and sorted. Why: a one-second stride bounds
the cost (6 frames for a 5 s clip instead of 121-125) while every second of the clip is
sampled, and the last frame is where an image-to-video clip has drifted furthest from its
(already reviewed) input image. ``full`` scores every frame. ``none`` scores nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from ltxserve.safety.checker import NSFWChecker, U8Array, validate_frames

SafetyMode: TypeAlias = Literal["none", "fast", "full"]
SAFETY_MODES: tuple[SafetyMode, ...] = ("none", "fast", "full")


def select_frames(num_frames: int, fps: int, mode: SafetyMode) -> list[int]:
    """Indices to score: ``full`` = all, ``fast`` = first frame of each second + last, ``none`` = [].

    >>> select_frames(121, 24, "fast")
    [0, 24, 48, 72, 96, 120]
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    if mode not in SAFETY_MODES:
        raise ValueError(f"unknown safety mode {mode!r}; expected one of {SAFETY_MODES}")
    if mode == "none" or num_frames == 0:
        return []
    if mode == "full":
        return list(range(num_frames))
    picks = set(range(0, num_frames, fps))
    picks.add(num_frames - 1)
    return sorted(picks)


@dataclass(frozen=True)
class SafetyVerdict:
    """Outcome of ``check_video``. ``nsfw`` is what the API reports as ``NSFWContent``.

    ``seconds`` is wall time of the check, including the one-time model load when this was
    the first check of the process. ``indices``/``scores`` are the checked frames and their
    P(nsfw), in order; ``max_score`` is 0.0 when nothing was checked.
    """

    mode: SafetyMode
    nsfw: bool
    max_score: float
    threshold: float
    frames_checked: int
    seconds: float
    indices: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()

    @property
    def checked(self) -> bool:
        """False for mode ``none``: the caller should then omit ``NSFWContent`` altogether."""
        return self.mode != "none"

    @property
    def flagged(self) -> tuple[int, ...]:
        """Indices of the frames scoring above the threshold (for logs)."""
        return tuple(i for i, s in zip(self.indices, self.scores, strict=True) if s > self.threshold)


def check_video(
    frames: U8Array, fps: int, mode: SafetyMode, checker: NSFWChecker, threshold: float
) -> SafetyVerdict:
    """Score the frames ``mode`` selects; NSFW when any checked frame scores **above** ``threshold``.

    ``frames``: the generated clip, RGB uint8 (F, H, W, 3). ``threshold`` comes from settings
    (``nsfw_threshold``); strictly-above matches its documented meaning. ``checkContent: false``
    is resolved by the caller into mode ``none``, which never touches (or loads) the model.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    validate_frames(frames)
    indices = select_frames(frames.shape[0], fps, mode)
    if not indices:
        return SafetyVerdict(mode, False, 0.0, threshold, 0, 0.0)
    start = time.perf_counter()
    # ``full`` passes the array itself: no copy of a possibly long clip.
    picked = frames if len(indices) == frames.shape[0] else frames[np.asarray(indices)]
    scores = checker.score_frames(picked)
    seconds = time.perf_counter() - start
    max_score = float(scores.max())
    return SafetyVerdict(
        mode=mode,
        nsfw=max_score > threshold,
        max_score=max_score,
        threshold=threshold,
        frames_checked=len(indices),
        seconds=seconds,
        indices=tuple(indices),
        scores=tuple(float(s) for s in scores),
    )
