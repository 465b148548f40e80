"""Opt-in speed and memory options for the transformer, each labelled exact or lossy.

| option (setting)           | effect                                            | exact?  |
|----------------------------|---------------------------------------------------|---------|
| ``fp8_weights``            | transformer weights stored as FP8 (e4m3), computed | lossy   |
|                            | in the model dtype (diffusers layerwise casting):  |         |
|                            | ~half the bf16 weight memory                       |         |
| ``compile_transformer``    | ``torch.compile`` of the transformer, warmed up at | lossy   |
|                            | load (kernel fusion reorders float sums)           | (≈1e-6) |
| ``text_encoder_offload``   | the Gemma text encoder leaves the GPU after each   | exact   |
|                            | encode (cached prompts never bring it back)        |         |
| ``step_cache_every``       | step cache: in the middle of the schedule, every   | lossy   |
|                            | N-th step reuses the previous step's prediction    |         |
|                            | instead of running the transformer                 |         |

Lossy options are off by default; ``bench/engine.py --quality`` reports PSNR of frames and SNR
of audio against the exact path on the same seed. Exact ones change where work happens, not
what it computes (tests/engine/test_exactness.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ltxserve.config import Settings
from ltxserve.logs import get_logger

log = get_logger(__name__)


def apply(t2v: Any, i2v: Any, settings: Settings, dtype: Any) -> None:
    """Apply the configured transformer options to the (shared) modules of both pipelines."""
    import torch

    transformer = t2v.transformer
    if settings.attention_backend:
        set_attention_backend(transformer, settings.attention_backend)
    if settings.fp8_weights:
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
        log.info("transformer weights stored as fp8 (lossy)")
    if settings.compile_transformer:
        compiled = torch.compile(transformer, fullgraph=False, dynamic=False)
        t2v.transformer = compiled
        i2v.transformer = compiled
        log.info("transformer compiled with torch.compile (lossy within float rounding)")


def set_attention_backend(model: Any, backend: str) -> None:
    """The diffusers attention-dispatcher backend for this model's attention only.

    ``ModelMixin.set_attention_backend`` also makes the backend the process-wide default, which the
    LTX-2 text connectors (a separate module that passes an attention mask) would then use too; a
    mask-less backend (flash) fails there. The previous default is put back.
    """
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    previous, _ = _AttentionBackendRegistry.get_active_backend()
    model.set_attention_backend(backend)
    _AttentionBackendRegistry.set_active_backend(previous)
    model._ltxserve_attention_backend = backend
    log.info("attention backend set", backend=backend)


def offload_text_encoder(settings: Settings, device: Any) -> bool:
    """Whether to move the text encoder off the GPU between encodes (``auto``: GPUs < 48 GiB)."""
    if settings.text_encoder_offload == "off" or device.type != "cuda":
        return False
    if settings.text_encoder_offload == "on":
        return True
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    return bool(total < 48 * 1024**3)


def cached_steps(steps: int, every: int) -> frozenset[int]:
    """Steps that reuse the previous prediction: every ``every``-th step, sparing the first and
    last fifth of the schedule (where the prediction changes fastest) and never two in a row."""
    if every < 2 or steps < 5:
        return frozenset()
    margin = max(1, steps // 5)
    return frozenset(i for i in range(margin, steps - margin) if (i - margin) % every == every - 1)


@contextmanager
def step_cache(transformer: Any, steps: int, every: int, start: int = 0) -> Iterator[frozenset[int]]:
    """Serve the transformer's output for the cached steps from the step before (one call per
    denoising step: CFG is batched into the same call, STG/modality passes are off). ``start``:
    the first step of this call (a resumed stage; ``engine.resume`` never resumes at a cached step)."""
    skip = cached_steps(steps, every)
    if not skip:
        yield skip
        return
    original = transformer.forward
    state: dict[str, Any] = {"call": start, "last": None}

    def forward(*args: Any, **kwargs: Any) -> Any:
        step = state["call"]
        state["call"] += 1
        if step in skip and state["last"] is not None:
            return state["last"]
        state["last"] = original(*args, **kwargs)
        return state["last"]

    own = "forward" in vars(transformer)  # diffusers hooks (e.g. engine.parallel) live there too
    transformer.forward = forward
    try:
        yield skip
    finally:
        if own:
            transformer.forward = original
        else:
            del transformer.forward
