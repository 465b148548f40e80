"""Fixtures for the safety tests: the real open_nsfw model (no mocks) and synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest
from safety_samples import landscape, noise, skin, text

from ltxserve.safety import NSFWChecker


@pytest.fixture(scope="session")
def checker() -> NSFWChecker:
    c = NSFWChecker()
    c.load()
    return c


@pytest.fixture(scope="session")
def safe_frames() -> np.ndarray:
    """Landscape, text and noise at 512x320 (an LTX-2 size)."""
    return np.stack([landscape(320, 512), text(320, 512), noise(320, 512)])


@pytest.fixture(scope="session")
def skin_score(checker: NSFWChecker) -> float:
    return float(checker.score_frames(skin(320, 512)[None])[0])
