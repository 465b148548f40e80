"""Frame and audio planning: how many frames to generate so the delivered clip is exact.

The rule (also in docs/engine.md): a client asks for ``duration x fps`` frames. LTX-2's video VAE
compresses time 8x causally, so the pipeline only produces ``8k + 1`` frames. We generate the
smallest ``8k + 1 >= duration x fps`` and drop the surplus frames (at most 7) from the end.
``fps`` is passed to the pipeline as its frame rate, so motion and audio are timed for the
requested rate. The audio track is cut (or, when the causal audio VAE comes out a few
milliseconds short, padded with silence) to exactly ``duration`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FramePlan:
    duration: int
    fps: int
    requested_frames: int  # what the client gets: duration x fps
    generated_frames: int  # what the pipeline makes: the smallest 8k+1 >= requested
    latent_frames: int

    @property
    def trimmed_frames(self) -> int:
        return self.generated_frames - self.requested_frames


def requested_frames(duration: int, fps: int) -> int:
    """The frames a client gets: exactly ``duration x fps`` (the one place this rule is written)."""
    return duration * fps


def plan_frames(duration: int, fps: int, temporal_ratio: int = 8) -> FramePlan:
    """The delivered and the generated frame counts for a clip (see the module docstring)."""
    if duration < 1 or fps < 1:
        raise ValueError(f"duration and fps must be >= 1, got {duration} s at {fps} fps")
    requested = requested_frames(duration, fps)
    k = -(-(requested - 1) // temporal_ratio)  # ceil((requested - 1) / ratio)
    generated = k * temporal_ratio + 1
    return FramePlan(
        duration=duration,
        fps=fps,
        requested_frames=requested,
        generated_frames=generated,
        latent_frames=k + 1,
    )


def fit_audio(audio: np.ndarray, sample_rate: int, duration: float) -> np.ndarray:
    """Cut or silence-pad ``(channels, samples)`` audio to exactly ``duration`` seconds."""
    target = round(duration * sample_rate)
    have = audio.shape[-1]
    if have >= target:
        return np.ascontiguousarray(audio[..., :target])
    pad = np.zeros((*audio.shape[:-1], target - have), dtype=audio.dtype)
    return np.concatenate([audio, pad], axis=-1)
