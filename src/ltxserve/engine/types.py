"""Plain data the engine takes and returns: no HTTP, JSON or database types here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ltxserve.engine.planning import requested_frames

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@dataclass(frozen=True)
class ModelSource:
    """Where the loaded LTX-2 weights came from (shared by the loader, two-stage and tiny models)."""

    location: str  # a local directory or a hub id
    is_tiny: bool
    checkpoint: str | None = None  # the single file ``location`` was converted from
    text_encoder: str | None = None  # loaded separately (single-file checkpoints have none)
    fp8: bool = False  # float8 transformer weights (kept in float8 on CUDA)


@dataclass(frozen=True)
class GenerationJob:
    """One generation request, already validated (see ``ltxserve.protocol``).

    ``seeds`` holds one seed per requested result (``numberResults``); ``guidance`` <= 1 turns
    classifier-free guidance off. ``image`` is the first-frame condition (image-to-video).
    """

    prompt: str
    width: int
    height: int
    duration: int
    fps: int
    steps: int
    guidance: float
    seeds: tuple[int, ...]
    negative_prompt: str = ""
    image: Image.Image | None = None
    enhance_prompt: bool = False
    audio: bool = True

    @property
    def requested_frames(self) -> int:
        """Frames the client gets (``planning.requested_frames``); the pipeline generates more
        (``FramePlan.generated_frames``) and the surplus is dropped."""
        return requested_frames(self.duration, self.fps)


@dataclass
class StageTimings:
    """Seconds spent per stage of one pipeline call (shared by every result of a batch)."""

    enhance: float = 0.0
    text_encode: float = 0.0
    denoise: float = 0.0
    video_decode: float = 0.0
    audio_decode: float = 0.0
    #: the ``vae.decode`` calls within ``video_decode`` (the rest: conversion to uint8 frames)
    vae_decode: float = 0.0

    @property
    def total(self) -> float:
        return self.enhance + self.text_encode + self.denoise + self.video_decode + self.audio_decode


@dataclass
class GenerationResult:
    """One result: exactly ``job.requested_frames`` frames and ``job.duration`` seconds of audio."""

    seed: int
    frames: np.ndarray  # (F, H, W, 3) uint8
    fps: int
    audio: np.ndarray | None  # (channels, samples) float32 in [-1, 1], or None without audio
    sample_rate: int
    prompt: str  # the prompt the model saw (the enhanced one when enhancement ran)
    timings: StageTimings = field(default_factory=StageTimings)


#: ``progress(step, total_steps)``; called after every denoising step.
ProgressCallback = Callable[[int, int], None]


class ResultSink(Protocol):
    """Takes results while they are decoded (a streamed file encode), from the engine's thread.

    ``index`` is the result's position in ``job.seeds``. ``start`` comes first, with the audio
    exactly as the result will carry it; then ``frames`` in order, (n, H, W, 3) uint8 views the
    engine never writes again, ``job.requested_frames`` in all.
    """

    def start(self, index: int, seed: int, audio: np.ndarray | None, sample_rate: int, fps: int) -> None: ...

    def frames(self, index: int, chunk: np.ndarray) -> None: ...
