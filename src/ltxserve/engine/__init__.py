"""LTX-2 generation on diffusers: load once, generate many (see ``Engine``)."""

from ltxserve.engine.capacity import CapacityError
from ltxserve.engine.engine import Engine, GenerationCancelled, RunPlan, sampler_kwargs
from ltxserve.engine.planning import FramePlan, plan_frames
from ltxserve.engine.types import GenerationJob, GenerationResult, ProgressCallback, StageTimings

__all__ = [
    "CapacityError",
    "Engine",
    "FramePlan",
    "GenerationCancelled",
    "GenerationJob",
    "GenerationResult",
    "ProgressCallback",
    "RunPlan",
    "StageTimings",
    "plan_frames",
    "sampler_kwargs",
]
