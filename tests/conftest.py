"""Shared fixtures: one tiny random-weight LTX-2 per test session (it outputs noise)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the hub: the tiny model is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ltxserve.config import Settings


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ltxserve.engine.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-ltx2")


@pytest.fixture(scope="session")
def engine_settings(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        model_path=str(tiny_model_dir),
        max_sequence_length=64,
        enhance_max_new_tokens=8,
    )


@pytest.fixture(scope="session")
def engine(engine_settings: Settings):  # type: ignore[no-untyped-def]
    from ltxserve.engine import Engine

    return Engine.load(engine_settings)
