"""Fixtures shared by the engine tests (the tiny model itself is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltxserve.engine.tiny import save_tiny_model


@pytest.fixture(scope="session")
def upsampler_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a tiny x2 latent upsampler (``latent_upsampler/``): two-stage runs."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-ltx2-up", upsampler=True)
