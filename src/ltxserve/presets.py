"""Known LTX-2 variants and how each one samples: the one place a request's ``steps`` and
``CFGScale`` become pipeline arguments.

A preset is picked once per server (``Settings.model_preset``, or detected from the checkpoint's
name: Lightricks ships ``ltx-2-19b-dev*.safetensors`` and ``ltx-2-19b-distilled*.safetensors``, with
``-fp8`` variants) and names the model ids clients may send for it. The engine applies it to every
job; the API's validation stays the contract's (``steps`` 1-100, ``CFGScale`` 1-20 are accepted for
every preset), and what a preset does with values its model cannot use is written here and in the
docs/engine.md:

* **dev** (``lightricks:ltx@2``): ``steps`` is the number of Euler steps on Lightricks'
  ``LTX2Scheduler`` schedule as its pipelines call it (no latent given: the shift of 4096 tokens,
  whatever the frame size, stretched to end at 0.1; ``ltx2_scheduler_sigmas``), ``CFGScale`` the
  classifier-free guidance scale (``<= 1``: off; without a negative prompt the engine uses
  Lightricks' ``DEFAULT_NEGATIVE_PROMPT``, as their pipelines do). LTX-2.0
  samples with CFG only: spatio-temporal guidance, modality isolation and guidance rescale (the
  LTX-2.3 defaults of diffusers' pipeline) are off and the legacy 2.0 cross-attention timestep is
  used.
* **distilled** (``lightricks:ltx@2-distilled``): the model was distilled for one schedule, the 8
  sigmas of Lightricks' ``DISTILLED_SIGMA_VALUES`` (ltx-pipelines ``utils/constants.py``, copied by
  diffusers into ``pipelines/ltx2/utils.py``), used as-is (no resolution-dependent shift) and
  without guidance (``distilled.py`` samples with ``simple_denoising_func``: one pass per step). Any
  other step count or guidance scale is off its training distribution, so the mapping is fixed:
  ``steps`` -> 8, ``CFGScale`` -> off (the negative prompt is not used). Progress reports the 8
  (plus refine) steps actually run.
* **2.3-dev** (``lightricks:ltx@2.3``) and **2.3-distilled** (``lightricks:ltx@2.3-fast``): LTX-2.3
  (22B, ``ltx-2.3-22b-*.safetensors``). Dev samples as the dev preset with LTX-2.3's guidance from
  Lightricks' ``LTX_2_3_PARAMS`` (``ltx23_guidance_kwargs``: ``CFGScale`` is the video CFG,
  audio CFG 7, STG 1 on block 28, rescale 0.7, modality scale 3; recommended 30 steps, CFG 3);
  distilled as the distilled preset (8 fixed sigmas, no guidance).
* ``-fp8`` variants sample like their base; their transformer weights stay float8 (e4m3) and are
  upcast per layer (diffusers layerwise casting), which needs a CUDA GPU.

Two-stage generation (half resolution, x2 latent upsampling, a 3-step refine on
``STAGE_2_DISTILLED_SIGMA_VALUES`` without guidance) is Lightricks' recommended path for large
frames. Its refine stage runs distilled weights: the distilled preset refines with itself
(``DistilledPipeline``); the dev preset refines with Lightricks' distilled LoRA on the dev
transformer, for stage 2 only (``TI2VidTwoStagesPipeline``, ``ti2vid_two_stages.py``), so it runs
two-stage only when ``distilled_lora_path`` is set (``two_stage``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

#: Lightricks' distilled schedule (``ltx_pipelines/utils/constants.py``; diffusers
#: ``pipelines/ltx2/utils.py`` has the same values). The scheduler appends the terminal 0.
DISTILLED_SIGMAS: Final = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
#: Refine schedule of the two-stage pipelines: the last three distilled sigmas, started by
#: re-noising the upsampled latents to the first of them.
STAGE_2_SIGMAS: Final = (0.909375, 0.725, 0.421875)

#: ``LTX2Scheduler`` constants (ltx-core ``components/schedulers.py``): the shift is interpolated
#: between BASE_SHIFT at 1024 tokens and MAX_SHIFT at 4096; the pipelines pass no latent, so the
#: token count is always 4096 (mu = 2.05), and the schedule is stretched to end at TERMINAL.
LTX2_BASE_SHIFT: Final = 0.95
LTX2_MAX_SHIFT: Final = 2.05
LTX2_SHIFT_TOKENS: Final = 4096
LTX2_TERMINAL: Final = 0.1


def ltx2_scheduler_sigmas(steps: int) -> tuple[float, ...]:
    """The first ``steps`` sigmas of ``LTX2Scheduler().execute(steps)`` (the terminal 0 is the
    scheduler's), in float32 with the same operations, so they are bit-identical (the parity suite
    checks against ltx-core's own). One step is ``(1.0,)``: their stretch divides 0 by 0 there."""
    import math

    import torch

    if steps <= 1:
        return (1.0,)
    slope = (LTX2_MAX_SHIFT - LTX2_BASE_SHIFT) / (4096 - 1024)
    mu = LTX2_SHIFT_TOKENS * slope + (LTX2_BASE_SHIFT - slope * 1024)
    t = torch.linspace(1.0, 0.0, steps + 1)[:-1]
    shifted = math.exp(mu) / (math.exp(mu) + (1 / t - 1))
    one_minus = 1.0 - shifted
    stretched = 1.0 - (one_minus / (one_minus[-1] / (1.0 - LTX2_TERMINAL)))
    return tuple(float(x) for x in stretched.to(torch.float32))


#: Runware's model id for LTX-2 (also ``ltxserve.protocol.LTX2_MODEL_ID``).
DEV_MODEL_ID: Final = "lightricks:ltx@2"
#: Runware's model ids for LTX-2.3: dev and the distilled ("fast") model.
LTX23_MODEL_ID: Final = "lightricks:ltx@2.3"
LTX23_FAST_MODEL_ID: Final = "lightricks:ltx@2.3-fast"

PresetName = Literal["dev", "distilled", "dev-fp8", "distilled-fp8", "2.3-dev", "2.3-distilled"]
Family = Literal["2.0", "2.3"]


@dataclass(frozen=True)
class Guider:
    """One modality's guidance, as ltx-pipelines' ``MultiModalGuiderParams``."""

    cfg: float
    stg: float
    rescale: float
    modality: float
    stg_blocks: tuple[int, ...]


#: ``LTX_2_3_PARAMS`` of ltx-pipelines 1.0.0 ``utils/constants.py`` (what its pipelines use for a
#: checkpoint whose ``model_version`` starts with 2.3): 30 steps; video CFG 3, audio CFG 7, STG 1
#: on transformer block 28, rescale 0.7, modality scale 3 for both (``skip_step`` 0). The parity
#: test ``test_ltx23_defaults_are_ltx_pipelines_constants`` reads them from the installed package.
LTX23_STEPS: Final = 30
LTX23_VIDEO: Final = Guider(cfg=3.0, stg=1.0, rescale=0.7, modality=3.0, stg_blocks=(28,))
LTX23_AUDIO: Final = Guider(cfg=7.0, stg=1.0, rescale=0.7, modality=3.0, stg_blocks=(28,))


def ltx23_guidance_kwargs(guidance: float) -> dict[str, Any]:
    """LTX-2.3's guidance for a request's ``CFGScale``, as diffusers ``LTX2Pipeline`` arguments.

    ``CFGScale`` is the video CFG scale (Lightricks' 3 is the recommended value); audio CFG, STG,
    rescale and modality guidance are Lightricks' ``LTX_2_3_PARAMS``. ``CFGScale <= 1`` turns every
    guidance term off (one transformer pass per step, as with LTX-2.0), so a client can still ask
    for unguided sampling. The audio-video cross-attention uses the other modality's timestep, as
    LTX-2.3's release code does (``use_cross_timestep=True``; docs/engine.md).
    """
    if guidance <= 1.0:
        return {**ltx20_guidance_kwargs(1.0), "use_cross_timestep": True}
    v, a = LTX23_VIDEO, LTX23_AUDIO
    return {
        "guidance_scale": float(guidance),
        "audio_guidance_scale": a.cfg,
        "stg_scale": v.stg,
        "audio_stg_scale": a.stg,
        "modality_scale": v.modality,
        "audio_modality_scale": a.modality,
        "guidance_rescale": v.rescale,
        "audio_guidance_rescale": a.rescale,
        # diffusers takes one block list for both modalities; Lightricks' are equal
        "spatio_temporal_guidance_blocks": list(v.stg_blocks),
        "use_cross_timestep": True,
    }


@dataclass(frozen=True)
class Sampling:
    """What one denoising stage gets: steps, an optional fixed schedule and guidance kwargs."""

    steps: int
    sigmas: tuple[float, ...] | None  # None: the scheduler's own (shifted) schedule
    guidance: float  # <= 1: classifier-free guidance off
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> bool:
        return self.guidance > 1.0

    @property
    def extra_passes(self) -> int:
        """Transformer calls per step besides the (CFG-batched) main one: LTX-2.3's STG and
        modality-isolation passes, one each when on (diffusers ``LTX2Pipeline``)."""
        k = self.kwargs
        stg = k.get("stg_scale", 0.0) > 0 or k.get("audio_stg_scale", 0.0) > 0
        modality = k.get("modality_scale", 1.0) > 1 or k.get("audio_modality_scale", 1.0) > 1
        return int(stg) + int(modality)

    @property
    def passes(self) -> int:
        """Batch rows the transformer runs per step and result (the ETA's unit of work)."""
        return (2 if self.cfg else 1) + self.extra_passes


def ltx20_guidance_kwargs(guidance: float) -> dict[str, Any]:
    """LTX-2.0's guidance settings for a CFG scale: CFG only, everything LTX-2.3 added off.

    At ``guidance <= 1`` guidance is off entirely: one transformer row per result per step and the
    negative prompt is never encoded.
    """
    scale = max(1.0, float(guidance))
    return {
        "guidance_scale": scale,
        "audio_guidance_scale": scale,
        "stg_scale": 0.0,
        "audio_stg_scale": 0.0,
        "modality_scale": 1.0,
        "audio_modality_scale": 1.0,
        "guidance_rescale": 0.0,
        "audio_guidance_rescale": 0.0,
        "spatio_temporal_guidance_blocks": None,
        "use_cross_timestep": False,
    }


@dataclass(frozen=True)
class ModelPreset:
    """One known LTX-2 variant: its recommended sampling and whether two-stage applies."""

    name: PresetName
    description: str
    distilled: bool
    fp8: bool
    #: Recommended defaults, shown in docs/engine.md (a request's own values win where allowed).
    default_steps: int
    default_guidance: float
    family: Family = "2.0"

    def guidance_kwargs(self, guidance: float) -> dict[str, Any]:
        """The family's pipeline guidance arguments for a CFG scale."""
        if self.family == "2.3":
            return ltx23_guidance_kwargs(guidance)
        return ltx20_guidance_kwargs(guidance)

    def can_refine(self, distilled_lora: bool) -> bool:
        """Whether two-stage has refine weights: the distilled model's own, or (dev) the distilled
        LoRA, without which the dev weights are off-distribution on the 3-step refine schedule."""
        return self.distilled or distilled_lora

    def sampling(self, steps: int, guidance: float) -> Sampling:
        """The first (or only) stage for a request's ``steps`` and ``CFGScale``."""
        if self.distilled:
            return Sampling(len(DISTILLED_SIGMAS), DISTILLED_SIGMAS, 1.0, self.guidance_kwargs(1.0))
        return Sampling(steps, ltx2_scheduler_sigmas(steps), guidance, self.guidance_kwargs(guidance))

    def refine_sampling(self) -> Sampling:
        """The second stage of two-stage generation, the same for every preset in Lightricks'
        pipelines (``simple_denoising_func``): 3 distilled steps, no guidance."""
        return Sampling(len(STAGE_2_SIGMAS), STAGE_2_SIGMAS, 1.0, self.guidance_kwargs(1.0))

    def mapping_note(self, steps: int, guidance: float, run: Sampling | None = None) -> str | None:
        """A log line when the request's values are replaced (None when they are used as sent);
        ``run``: ``sampling(steps, guidance)`` when the caller has it already."""
        run = run or self.sampling(steps, guidance)
        if run.steps == steps and (run.guidance == guidance or (guidance <= 1 and not run.cfg)):
            return None
        cfg = f"{run.guidance:g}" if run.cfg else "off"
        return f"{self.name} preset: steps {steps} -> {run.steps}, CFGScale {guidance:g} -> {cfg}"


PRESETS: Final[dict[str, ModelPreset]] = {
    p.name: p
    for p in (
        ModelPreset("dev", "LTX-2 19B dev (bf16): full sampling with CFG", False, False, 40, 4.0),
        ModelPreset(
            "distilled", "LTX-2 19B distilled (bf16): 8 fixed steps, no guidance", True, False, 8, 1.0
        ),
        ModelPreset("dev-fp8", "dev with float8 transformer weights (CUDA)", False, True, 40, 4.0),
        ModelPreset("distilled-fp8", "distilled with float8 transformer weights (CUDA)", True, True, 8, 1.0),
        ModelPreset(
            "2.3-dev",
            "LTX-2.3 22B dev: CFG with Lightricks' STG, rescale and modality guidance",
            False,
            False,
            LTX23_STEPS,
            LTX23_VIDEO.cfg,
            "2.3",
        ),
        ModelPreset(
            "2.3-distilled", "LTX-2.3 22B distilled: 8 fixed steps, no guidance", True, False, 8, 1.0, "2.3"
        ),
    )
}

_DISTILLED = re.compile(r"distill", re.IGNORECASE)
_FP8 = re.compile(r"fp8|float8|e4m3", re.IGNORECASE)
_LTX23 = re.compile(r"ltx-?2\.3|2\.3-22b", re.IGNORECASE)


def detect_preset_name(location: str | None) -> PresetName:
    """The preset a checkpoint's name implies (Lightricks' file names carry it:
    ``ltx-2.3-22b-dev.safetensors``, ``ltx-2.3-22b-distilled.safetensors``)."""
    name = (location or "").rstrip("/").rsplit("/", 1)[-1]
    distilled = bool(_DISTILLED.search(name))
    fp8 = bool(_FP8.search(name))
    if _LTX23.search(name):
        return "2.3-distilled" if distilled else "2.3-dev"
    if distilled:
        return "distilled-fp8" if fp8 else "distilled"
    return "dev-fp8" if fp8 else "dev"


def resolve_preset(model_preset: str, model_path: str | None) -> ModelPreset:
    """``model_preset`` (a ``PresetName``), or (``auto``) the one the checkpoint's name implies.

    Takes plain values rather than ``Settings`` so that this table stays below ``config`` in the
    layering (``Settings.preset()`` is the usual way in)."""
    if model_preset != "auto":
        return PRESETS[model_preset]
    return PRESETS[detect_preset_name(model_path)]


def preset_model_ids(preset: ModelPreset, distilled_model_ids: Sequence[str]) -> tuple[str, ...]:
    """The model ids that address a preset: Runware's (LTX-2.0 dev, LTX-2.3 dev and fast), the
    configurable ones for LTX-2.0 distilled (Runware lists no id for it)."""
    if preset.family == "2.3":
        return (LTX23_FAST_MODEL_ID,) if preset.distilled else (LTX23_MODEL_ID,)
    return tuple(distilled_model_ids) if preset.distilled else (DEV_MODEL_ID,)


def served_model_ids(
    preset: ModelPreset, distilled_model_ids: Sequence[str], model_ids: Sequence[str]
) -> tuple[str, ...]:
    """Every model id a deployment accepts: its preset's aliases, then ``model_ids``."""
    ids = [*preset_model_ids(preset, distilled_model_ids), *model_ids]
    return tuple(dict.fromkeys(ids))
