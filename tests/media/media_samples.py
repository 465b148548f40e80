"""Synthetic media for the media tests: small and deterministic (imported by name, so unique)."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 24_000
LEFT_HZ = 440.0
RIGHT_HZ = 660.0


def gradient_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """A gradient that moves a few pixels per frame: every frame differs from its neighbours."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        frames[i, ..., 0] = (x * 2 + i * 6) % 256
        frames[i, ..., 1] = (y * 2 + i * 4) % 256
        frames[i, ..., 2] = ((x + y) + i * 3) % 256
    return frames


def noisy_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradient plus noise: detail the encoder must spend bits on, so CRF changes show in bytes."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 20, (num_frames, height, width, 3))
    return np.clip(gradient_frames(num_frames, height, width) + noise, 0, 255).astype(np.uint8)


def stereo_sine(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(2, samples) float32: 440 Hz left, 660 Hz right, so a channel swap or loss shows."""
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * LEFT_HZ * t), 0.5 * np.sin(2 * np.pi * RIGHT_HZ * t)]).astype(
        np.float32
    )
