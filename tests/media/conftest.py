"""Fixtures for the media tests: small synthetic clips, real encoders (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest
from media_samples import gradient_frames, stereo_sine


@pytest.fixture(scope="session")
def frames_2s() -> np.ndarray:
    return gradient_frames(48, 96, 128)


@pytest.fixture(scope="session")
def audio_2s() -> np.ndarray:
    return stereo_sine(2.0)
