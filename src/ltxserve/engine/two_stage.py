"""Two-stage high resolution, as Lightricks' ``DistilledPipeline`` (ltx-pipelines ``distilled.py``)
and diffusers' LTX-2 docs run it:

1. denoise at half the width and height (a quarter of the tokens) with the preset's own sampling;
2. upsample the video latents x2 with the LTX-2 spatial upsampler (``LTX2LatentUpsamplePipeline``
   over ``LTX2LatentUpsamplerModel``; it works on un-normalized latents, which is what the pipeline
   returns with ``output_type="latent"``);
3. re-noise the upsampled latents (and the stage-1 audio latents) to the first refine sigma and
   denoise 3 steps at full size on ``STAGE_2_DISTILLED_SIGMA_VALUES`` without guidance.

It applies automatically to frames above ``two_stage_above_pixels`` when the preset's weights can
refine (distilled; see ``presets``) and an upsampler is available (``latent_upsampler_path`` or the
model's ``latent_upsampler/`` subfolder). Half sizes stay on the 32-pixel latent grid because the
API only accepts multiples of 64.

Temporal upsampling (LTX-2's x2 temporal upscaler) for high ``fps`` is not done: Lightricks'
LTX-2 text/image-to-video pipelines use only the spatial upscaler, and the only diffusers pipeline
with temporal upsampling is LTX-2.5's DFR temporal refine, whose refine schedule and keyframe
handling are specific to that model. The engine generates high-fps clips directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltxserve.engine.presets import ModelPreset
from ltxserve.logs import get_logger

if TYPE_CHECKING:
    import torch

    from ltxserve.config import Settings
    from ltxserve.engine.loader import ModelSource

log = get_logger(__name__)

UPSAMPLER_SUBFOLDER = "latent_upsampler"


def applies(preset: ModelPreset, settings: Settings, has_upsampler: bool, width: int, height: int) -> bool:
    """Whether a job of this size runs two-stage on this deployment."""
    return (
        settings.two_stage == "auto"
        and preset.two_stage
        and has_upsampler
        and width * height > settings.two_stage_above_pixels
        and width % 64 == 0
        and height % 64 == 0
    )


def stage_one_size(width: int, height: int) -> tuple[int, int]:
    return width // 2, height // 2


def _upsampler_source(settings: Settings, source: ModelSource) -> tuple[str, str | None] | None:
    """(location, subfolder) of the upsampler, or None when there is none to load."""
    if settings.latent_upsampler_path:
        return settings.latent_upsampler_path, None
    if source.checkpoint is not None:
        return None  # a converted single file has no upsampler: it is a file of its own
    local = Path(source.location)
    if local.is_dir():
        sub = local / UPSAMPLER_SUBFOLDER / "config.json"
        return (str(local), UPSAMPLER_SUBFOLDER) if sub.is_file() else None
    return source.location, UPSAMPLER_SUBFOLDER  # a hub id: Lightricks' repos carry one


def load_upsampler(
    settings: Settings, source: ModelSource, vae: Any, device: torch.device, dtype: torch.dtype
) -> Any | None:
    """``LTX2LatentUpsamplePipeline`` over the loaded VAE, or None when no upsampler is configured
    or found (two-stage then stays off, which the log says once)."""
    from diffusers import LTX2LatentUpsamplePipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    found = _upsampler_source(settings, source)
    if found is None:
        log.info("no latent upsampler: two-stage generation off", model=source.location)
        return None
    location, subfolder = found
    from ltxserve.engine import checkpoints

    try:
        if checkpoints.is_single_file(location):
            model = _load_single_file(Path(location), settings.single_file_config, dtype)
        else:
            kw = {"subfolder": subfolder} if subfolder else {}
            model = LTX2LatentUpsamplerModel.from_pretrained(location, dtype=dtype, **kw)
    except OSError as exc:
        if settings.latent_upsampler_path:
            raise
        log.info("no latent upsampler: two-stage generation off", model=location, reason=str(exc)[:160])
        return None
    pipe: Any = LTX2LatentUpsamplePipeline(vae=vae, latent_upsampler=model.eval())
    pipe.set_progress_bar_config(disable=True)
    if settings.cpu_offload == "none":
        model.to(device)
    else:
        pipe.enable_model_cpu_offload(device=device)
    log.info(
        "latent upsampler loaded", location=location, two_stage_above_pixels=settings.two_stage_above_pixels
    )
    return pipe


def _load_single_file(path: Path, config_source: str | None, dtype: torch.dtype) -> Any:
    """Lightricks' ``ltx-2-spatial-upscaler-x2-*.safetensors``: diffusers key names already
    (``convert_ltx2_spatial_latent_upsampler`` in diffusers' script loads it as is)."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
    from safetensors.torch import load_file

    from ltxserve.engine import checkpoints

    if config_source is None:
        config = dict(checkpoints.LTX2_0_CONFIGS["latent_upsampler"])
    else:
        config = LTX2LatentUpsamplerModel.load_config(config_source, subfolder=UPSAMPLER_SUBFOLDER)
    state = load_file(str(path))
    model = checkpoints.load_strict(
        LTX2LatentUpsamplerModel, config, state, f"{path.name} (latent upsampler)"
    )
    return model.to(dtype)


def upsample(upsample_pipe: Any, latents: Any) -> Any:
    """x2 spatial upsampling of un-normalized video latents (B, C, F, h, w) -> (B, C, F, 2h, 2w)."""
    return upsample_pipe(latents=latents, output_type="latent", return_dict=False)[0]
