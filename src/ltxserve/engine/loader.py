"""Find, build and load the LTX-2 checkpoint; choose device, dtype and memory options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltxserve.config import Settings
from ltxserve.engine import accel, checkpoints, two_stage
from ltxserve.engine.tiny import is_tiny_model, save_tiny_model
from ltxserve.engine.types import ModelSource
from ltxserve.logs import get_logger

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

TINY_DIRNAME = "tiny-ltx2"
NOISE_WARNING = "tiny random-weight LTX-2: it outputs noise, not video"


def resolve_model(settings: Settings) -> ModelSource:
    """The configured checkpoint, or the tiny model under ``data_dir`` (built on first use)."""
    if settings.model_path:
        local = Path(settings.model_path)
        if checkpoints.is_single_file(settings.model_path):
            device, _ = select_device(settings)
            sf = checkpoints.prepare_single_file(
                settings.model_path,
                settings.text_encoder_path,
                settings.data_dir,
                device,
                settings.single_file_config,
            )
            return ModelSource(str(sf.converted), False, str(sf.checkpoint), sf.text_encoder, sf.fp8)
        if local.exists():
            return ModelSource(str(local), is_tiny_model(local))
        return ModelSource(settings.model_path, False)  # a hub id: plain from_pretrained
    path = settings.data_dir / TINY_DIRNAME
    if not is_tiny_model(path):
        log.warning("no model configured: building the tiny model", path=str(path), note=NOISE_WARNING)
        save_tiny_model(path)
    return ModelSource(str(path), True)


def select_device(settings: Settings) -> tuple[torch.device, torch.dtype]:
    import torch

    if settings.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(settings.device)
    if settings.dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, settings.dtype)
    return device, dtype


def load_pipelines(settings: Settings, source: ModelSource) -> tuple[Any, Any]:
    """Load ``LTX2Pipeline`` once and build ``LTX2ImageToVideoPipeline`` over the same modules
    (with the dev preset's distilled LoRA, when configured, loaded and switched off)."""
    from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline

    device, dtype = select_device(settings)
    if source.is_tiny:
        log.warning("loading model", location=source.location, note=NOISE_WARNING)
    else:
        log.info("loading model", location=source.location, device=str(device), dtype=str(dtype))
    # A converted single file brings no text encoder: it is loaded from text_encoder_path.
    text = checkpoints.load_text_components(source.text_encoder, dtype) if source.text_encoder else {}
    t2v = LTX2Pipeline.from_pretrained(source.location, dtype=dtype, **text)
    t2v.set_progress_bar_config(disable=True)
    # The dev refine stage's distilled LoRA: injected before fp8 casting, offload and compile.
    two_stage.load_refine_lora(settings, source, settings.preset(), t2v)
    if source.fp8 and not settings.fp8_weights:
        checkpoints.keep_fp8(t2v.transformer, dtype)  # back to float8 before it reaches the GPU
    # Same module objects, no second copy of the weights.
    i2v: Any = LTX2ImageToVideoPipeline(**t2v.components)
    i2v.set_progress_bar_config(disable=True)
    for pipe in (t2v, i2v):
        if settings.cpu_offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif settings.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
    if settings.cpu_offload == "none":
        t2v.to(device)
    accel.apply(t2v, i2v, settings, dtype)
    return t2v, i2v
