"""Synthetic frames for the safety tests (shared by conftest and the test modules).

No explicit image can live in the repository, so the "high" fixture is a flat medium skin tone
(RGB 158, 118, 110): the flat colour the real model scores highest that we found (~0.53, by a
scan of flat colours), far above the safe fixtures (< 0.01).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SKIN_RGB = (158, 118, 110)


def landscape(height: int, width: int) -> np.ndarray:
    """Sky gradient over green ground: the plainest 'safe' photo-like frame."""
    y = np.arange(height, dtype=np.float32)[:, None, None] / height
    sky = np.concatenate([100 + 80 * y, 150 + 60 * y, 230 - 20 * y], axis=2)
    ground = np.concatenate([40 + 0 * y, 120 + 30 * y, 40 + 0 * y], axis=2)
    img = np.where(y > 0.6, ground, sky)
    return np.broadcast_to(img, (height, width, 3)).astype(np.uint8)


def text(height: int, width: int) -> np.ndarray:
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for row in range(0, height, 24):
        draw.text((8, row + 4), "The quick brown fox jumps over the lazy dog 0123456789", fill="black")
    return np.asarray(img)


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def skin(height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.array(SKIN_RGB, dtype=np.uint8), (height, width, 3)).copy()
