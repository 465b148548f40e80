"""Which of Lightricks' reference recipes a deployment and a job run, in words: logged at start and
per job, printed by ``ltxserve generate`` and shown by ``/readyz``, so a user comparing our output
with Lightricks' pipelines knows what to compare with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ltxserve.presets import ModelPreset, Sampling

if TYPE_CHECKING:
    from ltxserve.config import Settings
    from ltxserve.engine.types import GenerationJob


def _stage(sampling: Sampling, preset: ModelPreset) -> str:
    if preset.distilled:
        schedule = "8 DISTILLED_SIGMA_VALUES"
    else:
        schedule = f"{sampling.steps} steps on LTX2Scheduler sigmas (fixed shift, mu 2.05)"
    guidance = f"CFG {sampling.guidance:g}" if sampling.cfg else "no guidance"
    if sampling.extra_passes:
        k = sampling.kwargs
        guidance += (
            f" (audio CFG {k['audio_guidance_scale']:g}, STG {k['stg_scale']:g} at blocks "
            f"{k['spatio_temporal_guidance_blocks']}, rescale {k['guidance_rescale']:g}, "
            f"modality {k['modality_scale']:g})"
        )
    return f"{schedule}, {guidance}"


def deployment(preset: ModelPreset, settings: Settings, upsampler: bool, distilled_lora: bool) -> str:
    """One line for the model-ready log and ``/readyz``."""
    if preset.distilled:
        base = "distilled (Lightricks DistilledPipeline): 8 DISTILLED_SIGMA_VALUES, no guidance"
    elif preset.family == "2.3":
        base = (
            "2.3-dev (Lightricks TI2VidTwoStagesPipeline, LTX_2_3_PARAMS guidance): LTX2Scheduler sigmas, "
            "video/audio CFG, STG, rescale, modality guidance, DEFAULT_NEGATIVE_PROMPT when none is given"
        )
    else:
        base = (
            "dev (Lightricks TI2VidTwoStagesPipeline, LTX-2.0 guidance): LTX2Scheduler sigmas, CFG only, "
            "DEFAULT_NEGATIVE_PROMPT when none is given"
        )
    if settings.two_stage == "off":
        return f"{base}; single stage (two_stage=off)"
    if not upsampler or not preset.can_refine(distilled_lora):
        missing = "spatial upsampler" if not upsampler else "distilled LoRA"
        return f"{base}; single stage at every size (no {missing} found)"
    refine = "the distilled weights" if preset.distilled else "the distilled LoRA"
    return (
        f"{base}; two-stage above {settings.two_stage_above_pixels} pixels: half size, x2 spatial "
        f"upsampler, 3 STAGE_2_DISTILLED_SIGMA_VALUES steps with {refine}"
    )


def job(preset: ModelPreset, job: GenerationJob, first: Sampling, two_stage: bool) -> str:
    """One line per job: stages, schedule, guidance and the negative prompt used."""
    parts = [f"{preset.name}"]
    if two_stage:
        parts.append(f"stage 1 at {job.width // 2}x{job.height // 2}: {_stage(first, preset)}")
        parts.append(f"x2 upsample, refine at {job.width}x{job.height}: 3 distilled steps, no guidance")
    else:
        parts.append(f"one stage at {job.width}x{job.height}: {_stage(first, preset)}")
    if first.cfg:
        parts.append(
            "negative prompt: " + ("request's" if job.negative_prompt else "DEFAULT_NEGATIVE_PROMPT")
        )
    if job.image is not None:
        parts.append(
            "image: latent frame 0 (CRF 33)"
            + (", re-encoded at full size for the refine" if two_stage else "")
        )
    return "; ".join(parts)
