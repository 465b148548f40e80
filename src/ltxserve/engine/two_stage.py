"""Two-stage high resolution, as Lightricks' ``DistilledPipeline`` (ltx-pipelines ``distilled.py``)
and ``TI2VidTwoStagesPipeline`` (``ti2vid_two_stages.py``) and diffusers' LTX-2 docs run it:

1. denoise at half the width and height (a quarter of the tokens) with the preset's own sampling
   (dev: its steps and CFG; distilled: its 8 sigmas);
2. upsample the video latents x2 with the LTX-2 spatial upsampler (``LTX2LatentUpsamplePipeline``
   over ``LTX2LatentUpsamplerModel``; it works on un-normalized latents, which is what the pipeline
   returns with ``output_type="latent"``);
3. re-noise the upsampled latents (and the stage-1 audio latents) to the first refine sigma and
   denoise 3 steps at full size on ``STAGE_2_DISTILLED_SIGMA_VALUES`` without guidance. The
   distilled model refines with its own weights; the dev model with Lightricks' distilled LoRA
   (``ltx-2-19b-distilled-lora-384.safetensors``, ``distilled_lora_path``) switched on for this
   stage only: it is loaded once at start (diffusers' ``LTX2LoraLoaderMixin``, which converts
   Lightricks' key layout) and left off, so stage 1 and single-stage jobs run the plain dev weights.

It applies automatically to frames above ``two_stage_above_pixels`` when the preset can refine
(see ``presets``) and an upsampler is available (``latent_upsampler_path`` or the model's
``latent_upsampler/`` subfolder). Half sizes stay on the 32-pixel latent grid because the API only
accepts multiples of 64.

Temporal upsampling (LTX-2's x2 temporal upscaler) for high ``fps`` is not done: Lightricks'
LTX-2 text/image-to-video pipelines use only the spatial upscaler, and the only diffusers pipeline
with temporal upsampling is LTX-2.5's DFR temporal refine, whose refine schedule and keyframe
handling are specific to that model. The engine generates high-fps clips directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltxserve.logs import get_logger
from ltxserve.presets import ModelPreset

if TYPE_CHECKING:
    import torch

    from ltxserve.config import Settings
    from ltxserve.engine.types import ModelSource

log = get_logger(__name__)

UPSAMPLER_SUBFOLDER = "latent_upsampler"
#: Adapter name of Lightricks' distilled LoRA on the dev transformer.
REFINE_ADAPTER = "distilled"
#: LoRA modules of the text connectors. Lightricks' two-stage pipeline encodes the prompt once,
#: without the LoRA, and stage 2 reuses that context, so they are not loaded.
_CONNECTOR_MODULES = (
    "connectors.",
    "transformer.video_embeddings_connector.",
    "transformer.audio_embeddings_connector.",
)


#: File names as Lightricks ships them next to the checkpoints (Hugging Face Lightricks/LTX-2:
#: ``ltx-2-19b-distilled-lora-384.safetensors``, ``ltx-2-spatial-upscaler-x2-1.0.safetensors``; LTX-2.3:
#: ``ltx-2.3-22b-distilled-lora-384.safetensors``, ``ltx-2.3-spatial-upscaler-x2-1.0.safetensors``).
_FAMILY = re.compile(r"^(ltx-\d+(?:\.\d+)?)-", re.IGNORECASE)


def shipped_parts(model_path: str | None) -> tuple[Path | None, Path | None]:
    """(distilled LoRA, x2 spatial upsampler) found next to a Lightricks single-file checkpoint,
    named as Lightricks ships them for the same family (highest version when several)."""
    if not model_path:
        return None, None
    path = Path(model_path)
    match = _FAMILY.match(path.name)
    if not path.is_file() or match is None:
        return None, None
    family = match.group(1)

    def newest(pattern: str) -> Path | None:
        found = sorted(p for p in path.parent.glob(pattern) if p.is_file() and "fp8" not in p.name.lower())
        return found[-1] if found else None

    return (
        newest(f"{family}-*distilled-lora*.safetensors"),
        newest(f"{family}-spatial-upscaler-x2-*.safetensors"),
    )


def with_shipped_parts(settings: Settings) -> Settings:
    """``settings`` with ``distilled_lora_path`` / ``latent_upsampler_path`` filled in from the
    model directory when unset and the files are there: Lightricks' reference recipe for dev is the
    two-stage ``TI2VidTwoStagesPipeline``, so it is what a directory holding its parts runs."""
    if settings.two_stage == "off":
        return settings
    lora, upsampler = shipped_parts(settings.model_path)
    update: dict[str, str] = {}
    if lora is not None and not settings.distilled_lora_path:
        update["distilled_lora_path"] = str(lora)
    if upsampler is not None and not settings.latent_upsampler_path:
        update["latent_upsampler_path"] = str(upsampler)
    if not update:
        return settings
    log.info("two-stage parts found next to the checkpoint", **update)
    return settings.model_copy(update=update)


def applies(
    preset: ModelPreset,
    settings: Settings,
    has_upsampler: bool,
    width: int,
    height: int,
    distilled_lora: bool = False,
) -> bool:
    """Whether a job of this size runs two-stage on this deployment."""
    return (
        settings.two_stage == "auto"
        and preset.can_refine(distilled_lora)
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
    (``convert_ltx2_spatial_latent_upsampler`` in diffusers' script loads it as is). Built from the
    file's embedded config when it has one (``lightricks_config.translate_upsampler``)."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
    from safetensors.torch import load_file

    from ltxserve.engine import checkpoints, lightricks_config

    embedded = checkpoints.embedded_config(path) if config_source is None else None
    if config_source is not None:
        config = LTX2LatentUpsamplerModel.load_config(config_source, subfolder=UPSAMPLER_SUBFOLDER)
    elif embedded is not None:
        translation = lightricks_config.translate_upsampler(embedded)
        if translation.ignored:
            log.info("upsampler config fields ltx-core does not read", fields=translation.ignored)
        config = translation.configs["latent_upsampler"]
    else:
        config = dict(checkpoints.LTX2_0_CONFIGS["latent_upsampler"])
    state = load_file(str(path))
    model = checkpoints.load_strict(
        LTX2LatentUpsamplerModel, config, state, f"{path.name} (latent upsampler)"
    )
    return model.to(dtype)


def with_image_frame(pipe: Any, latents: Any, image: Any) -> Any:
    """Image-to-video refine as Lightricks runs it (``ti2vid_two_stages.py``, ``distilled.py``: the
    stage-2 conditionings are built from the input image at the full size): the conditioning image,
    through the same CRF treatment as stage 1 (diffusers' ``apply_image_conditioning_crf``, default
    CRF 33) and encoded at full size, replaces latent frame 0 of the upsampled latents, which the
    refine then holds clean. Without it frame 0 would be the upsampled stage-1 latent: softer and
    less faithful to the image. ``latents`` are un-normalized (B, C, F, H, W), as the pipeline takes
    them; text-to-video (``image`` None) returns them unchanged."""
    if image is None:
        return latents
    import numpy as np
    import PIL.Image
    from diffusers.pipelines.ltx2.pipeline_ltx2_image2video import retrieve_latents
    from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf, resolve_default_image_crf

    crf = resolve_default_image_crf(pipe.text_encoder)
    if crf != 0:
        image = PIL.Image.fromarray(apply_image_conditioning_crf(np.array(image.convert("RGB")), crf))
    ratio = pipe.vae_spatial_compression_ratio
    height, width = latents.shape[-2] * ratio, latents.shape[-1] * ratio
    pixels = pipe.video_processor.preprocess(image, height=height, width=width)
    pixels = pixels.to(device=pipe.vae.device, dtype=pipe.vae.dtype).unsqueeze(2)
    frame = retrieve_latents(pipe.vae.encode(pixels), None, "argmax")
    out = latents.clone()
    out[:, :, :1] = frame.to(device=out.device, dtype=out.dtype)
    return out


def upsample(upsample_pipe: Any, latents: Any) -> Any:
    """x2 spatial upsampling of un-normalized video latents (B, C, F, h, w) -> (B, C, F, 2h, 2w)."""
    return upsample_pipe(latents=latents, output_type="latent", return_dict=False)[0]


# --------------------------------------------------------------------------- distilled LoRA (dev)


def load_refine_lora(settings: Settings, source: ModelSource, preset: ModelPreset, pipe: Any) -> bool:
    """Load Lightricks' distilled LoRA into the dev transformer, switched off, when two-stage can
    use it; True when loaded. Called before offload, fp8 casting and ``torch.compile`` so those see
    the adapter layers (diffusers' layerwise casting keeps PEFT layers in the compute dtype)."""
    if preset.distilled:
        if settings.distilled_lora_path:
            log.info("distilled_lora_path ignored: the distilled model already refines with its own weights")
        return False
    if not settings.distilled_lora_path:
        log.info("no distilled LoRA (distilled_lora_path): the dev preset generates in one stage")
        return False
    if settings.two_stage == "off":
        log.info("two_stage=off: distilled LoRA not loaded, the dev preset generates in one stage")
        return False
    if _upsampler_source(settings, source) is None:
        log.warning("distilled LoRA not loaded: no latent upsampler, the dev preset generates in one stage")
        return False
    from ltxserve.engine.checkpoints import CheckpointError

    path = Path(settings.distilled_lora_path)
    if not path.is_file():
        raise CheckpointError(f"distilled_lora_path {path} is not a file (expected a .safetensors LoRA)")
    transformer = pipe.transformer
    dtype = transformer.dtype
    # diffusers converts Lightricks' layout (diffusion_model.*) to its own (transformer.*, connectors.*).
    # Lightricks' file has no alphas (ltx_core fuses W + strength * B @ A): PEFT then uses alpha = rank.
    state, metadata = pipe.lora_state_dict(str(path), return_lora_metadata=True)
    kept = {k: v.to(dtype) for k, v in state.items() if not k.startswith(_CONNECTOR_MODULES)}
    _check_lora_modules(kept, transformer, path.name)
    dropped = len(state) - len(kept)
    del state
    pipe.load_lora_into_transformer(
        kept,
        transformer=transformer,
        adapter_name=REFINE_ADAPTER,
        metadata=metadata,
        _pipeline=pipe,
        low_cpu_mem_usage=True,  # inject on the meta device, then take these tensors as they are
    )
    transformer.set_adapters(REFINE_ADAPTER, weights=settings.distilled_lora_scale)
    transformer.disable_adapters()  # on only around the refine stage (refine_weights)
    log.info(
        "distilled LoRA loaded for the dev refine stage",
        path=str(path),
        scale=settings.distilled_lora_scale,
        tensors=len(kept),
        connector_tensors_skipped=dropped,
    )
    return True


def _check_lora_modules(state: dict[str, Any], transformer: Any, what: str) -> None:
    """Every LoRA tensor must name a transformer module: PEFT would only warn about the rest,
    and a half-applied LoRA refines wrongly without a visible error."""
    from ltxserve.engine.checkpoints import CheckpointError

    names = {name for name, _ in transformer.named_modules()}
    wanted = {k.removeprefix("transformer.").split(".lora_")[0] for k in state}
    unknown = sorted(m for m in wanted if m not in names)
    foreign = sorted(k for k in state if not k.startswith("transformer."))
    if not state or unknown or foreign:
        raise CheckpointError(
            f"{what} is not an LTX-2 LoRA for this transformer (no tensors, or modules it lacks: "
            f"{(unknown + foreign)[:5]}); expected Lightricks' distilled LoRA for this model release."
        )


def has_refine_lora(transformer: Any) -> bool:
    """Whether the distilled LoRA is loaded into ``transformer`` (compiled or not)."""
    model = getattr(transformer, "_orig_mod", transformer)
    return REFINE_ADAPTER in (getattr(model, "peft_config", None) or {})


def drop_refine_lora(transformer: Any) -> None:
    """Remove the LoRA again (no upsampler after all: the adapter would only hold memory)."""
    getattr(transformer, "_orig_mod", transformer).delete_adapters(REFINE_ADAPTER)
    log.warning("distilled LoRA unloaded: no latent upsampler, the dev preset generates in one stage")


@contextmanager
def refine_weights(transformer: Any, distilled_lora: bool) -> Iterator[None]:
    """The distilled LoRA switched on for the refine stage only (a no-op without it). PEFT's
    disabled layers call the base layer alone, so everything else runs the plain dev weights."""
    if not distilled_lora:
        yield
        return
    model = getattr(transformer, "_orig_mod", transformer)
    model.enable_adapters()
    try:
        yield
    finally:
        model.disable_adapters()
