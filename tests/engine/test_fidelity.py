"""Model presets (distilled schedule), two-stage generation and chunked decode on real tiny pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, decode
from ltxserve.presets import (
    DISTILLED_SIGMAS,
    PRESETS,
    STAGE_2_SIGMAS,
    detect_preset_name,
    ltx2_scheduler_sigmas,
)
from ltxserve.protocol import ValidationContext, parse_task
from ltxserve.testing import PeakRSS  # the sampler bench/memory.py uses: both measure alike

JOB = GenerationJob(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=128,
    height=64,
    duration=1,
    fps=12,
    steps=40,
    guidance=4.0,
    seeds=(3,),
)


@pytest.fixture(scope="module")
def distilled(upsampler_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine.load(
        Settings(
            data_dir=tmp_path_factory.mktemp("data"),
            model_path=str(upsampler_model_dir),
            model_preset="distilled",
            max_sequence_length=64,
            two_stage_above_pixels=128 * 64,  # two-stage above the tests' small size
        )
    )


@contextmanager
def transformer_calls(engine: Engine) -> Iterator[list[dict[str, Any]]]:
    """Per transformer pass: batch rows, video tokens and the timestep (sigma x 1000)."""
    calls: list[dict[str, Any]] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        calls.append(
            {
                "rows": int(kwargs["hidden_states"].shape[0]),
                "tokens": int(kwargs["hidden_states"].shape[1]),
                "timestep": float(kwargs["timestep"].flatten()[0]),
            }
        )

    handle = engine.t2v.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


# --- presets ------------------------------------------------------------------------------------


def test_distilled_preset_maps_steps_and_guidance() -> None:
    preset = PRESETS["distilled"]
    run = preset.sampling(steps=40, guidance=4.0)
    assert (run.steps, run.sigmas, run.cfg) == (8, DISTILLED_SIGMAS, False)
    assert run.kwargs["guidance_scale"] == 1.0
    assert preset.mapping_note(40, 4.0) == "distilled preset: steps 40 -> 8, CFGScale 4 -> off"
    assert preset.mapping_note(8, 1.0) is None
    dev = PRESETS["dev"].sampling(steps=40, guidance=4.0)
    assert (dev.steps, dev.sigmas, dev.guidance) == (40, ltx2_scheduler_sigmas(40), 4.0)  # LTX2Scheduler
    assert PRESETS["dev"].mapping_note(40, 4.0) is None
    assert PRESETS["distilled"].can_refine(distilled_lora=False)
    assert not PRESETS["dev"].can_refine(distilled_lora=False)  # needs the distilled LoRA
    assert PRESETS["dev"].can_refine(distilled_lora=True)


@pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("/models/ltx-2-19b-dev.safetensors", "dev"),
        ("/models/ltx-2-19b-dev-fp8.safetensors", "dev-fp8"),
        ("/models/ltx-2-19b-distilled.safetensors", "distilled"),
        ("/models/ltx-2-19b-distilled-fp8.safetensors", "distilled-fp8"),
        ("rootonchair/LTX-2-19b-distilled", "distilled"),
        ("Lightricks/LTX-2", "dev"),
        (None, "dev"),
    ],
)
def test_preset_detected_from_checkpoint_name(name: str | None, preset: str) -> None:
    assert detect_preset_name(name) == preset


def test_model_ids_follow_the_preset() -> None:
    def accepted(settings: Settings, model: str) -> bool:
        raw = {"taskType": "videoInference", "taskUUID": "6ad1a9d4-3d3e-4a47-9d0e-4c4cc6a4a001"}
        task, errors = parse_task(
            {**raw, "model": model, "positivePrompt": "x"}, ValidationContext.from_settings(settings)
        )
        return not errors and task is not None

    dev = Settings()
    assert accepted(dev, "lightricks:ltx@2")
    assert not accepted(dev, "lightricks:ltx@2-distilled")
    distilled = Settings(model_path="/models/ltx-2-19b-distilled.safetensors")
    assert accepted(distilled, "lightricks:ltx@2-distilled")
    assert not accepted(distilled, "lightricks:ltx@2")
    custom = Settings(model_preset="distilled", distilled_model_ids=["acme:fast@1"], model_ids=["acme:any@1"])
    assert custom.served_model_ids() == ("acme:fast@1", "acme:any@1")
    assert accepted(custom, "acme:any@1")


def test_distilled_engine_runs_its_schedule_without_guidance(distilled: Engine) -> None:
    """8 passes, one row each (no CFG), at exactly Lightricks' sigmas (no shift applied)."""
    seen: list[tuple[int, int]] = []
    with transformer_calls(distilled) as calls:
        (result,) = distilled.generate(JOB, progress=lambda i, n: seen.append((i, n)))
    assert [c["rows"] for c in calls] == [1] * 8
    assert [c["timestep"] for c in calls] == pytest.approx([s * 1000 for s in DISTILLED_SIGMAS], abs=1e-3)
    assert seen[-1] == (8, 8)
    assert result.frames.shape == (12, 64, 128, 3)
    # The request's steps / CFGScale do not change the output: the mapping is fixed.
    (again,) = distilled.generate(replace(JOB, steps=3, guidance=9.0, negative_prompt="other"))
    assert np.array_equal(result.frames, again.frames)


# --- two-stage --------------------------------------------------------------------------------


def test_two_stage_makes_the_requested_size_and_length(distilled: Engine) -> None:
    job = replace(JOB, width=256, height=128, duration=2, fps=7)  # 14 frames -> 17 generated
    plan = distilled.plan(job)
    assert plan.two_stage
    assert plan.steps == 8 + 3
    ups: list[tuple[int, ...]] = []
    handle = distilled.upsampler.latent_upsampler.register_forward_hook(
        lambda _m, args, out: ups.append((*args[0].shape[-2:], *out.shape[-2:]))
    )
    seen: list[tuple[int, int]] = []
    try:
        with transformer_calls(distilled) as calls:
            (result,) = distilled.generate(job, progress=lambda i, n: seen.append((i, n)))
    finally:
        handle.remove()
    latent_frames = 3
    assert [c["tokens"] for c in calls] == [latent_frames * 2 * 4] * 8 + [latent_frames * 4 * 8] * 3
    assert [c["timestep"] for c in calls[8:]] == pytest.approx([s * 1000 for s in STAGE_2_SIGMAS], abs=1e-3)
    assert ups == [(2, 4, 4, 8)]  # half-size latents upsampled x2
    assert seen == [(i, 11) for i in range(1, 12)]
    assert result.frames.shape == (14, 128, 256, 3)
    assert result.audio is not None
    assert result.audio.shape == (2, 2 * distilled.sample_rate)


def test_two_stage_image_to_video_and_threshold(distilled: Engine) -> None:
    from PIL import Image

    job = replace(JOB, width=256, height=128, image=Image.new("RGB", (300, 200), (200, 30, 30)))
    (result,) = distilled.generate(job)
    assert result.frames.shape == (12, 128, 256, 3)
    assert not distilled.plan(JOB).two_stage  # at the threshold: one stage


def test_two_stage_needs_a_preset_that_can_refine(engine: Engine) -> None:
    """The dev preset without the distilled LoRA has no refine weights: one stage at any size
    (with an upsampler too: tests/engine/test_refine_lora.py)."""
    assert not engine.distilled_lora
    assert not engine.preset.can_refine(engine.distilled_lora)
    assert not engine.plan(replace(JOB, width=1024, height=512)).two_stage


# --- chunked decode and memory -------------------------------------------------------------------


def test_chunked_decode_equals_whole_decode(engine: Engine) -> None:
    """With context at the tiny decoder's receptive field (~8 latent frames) chunks are exact."""
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, engine.t2v.vae.config.latent_channels, 11, 2, 4, generator=gen)
    whole = decode.decode_video(engine.t2v, latents, chunked=False, dtype=np.float32)
    chunked = decode.decode_video(
        engine.t2v, latents, chunked=True, chunk_frames=3, context_frames=9, dtype=np.float32
    )
    assert whole.shape == chunked.shape == (1, 81, 64, 128, 3)
    assert np.abs(whole - chunked).max() < 1e-5
    cut = decode.decode_video(
        engine.t2v, latents, chunked=True, chunk_frames=3, context_frames=9, keep_frames=70, dtype=np.float32
    )
    assert np.abs(cut - whole[:, :70]).max() < 1e-5
    # Less context than the receptive field: an approximation (what production defaults trade).
    rough = decode.decode_video(engine.t2v, latents, chunked=True, chunk_frames=3, context_frames=2)
    assert not np.array_equal(rough, decode.to_uint8(whole))


def test_chunked_decode_tiles_large_frames(engine: Engine) -> None:
    """Frames wider than the VAE's 512-pixel tile are decoded in its blended spatial tiles."""
    latents = torch.randn(
        1, engine.t2v.vae.config.latent_channels, 3, 2, 20, generator=torch.Generator().manual_seed(1)
    )
    calls: list[int] = []
    handle = engine.t2v.vae.decoder.register_forward_pre_hook(
        lambda _m, args: calls.append(args[0].shape[-1])
    )
    try:
        tiled = decode.decode_video(engine.t2v, latents, chunked=True, spatial_tiles=True, dtype=np.float32)
    finally:
        handle.remove()
    assert tiled.shape == (1, 17, 64, 640, 3)
    assert max(calls) < 20  # no decoder call saw the whole width
    whole = decode.decode_video(engine.t2v, latents, chunked=False, dtype=np.float32)
    assert np.abs(tiled - whole).mean() < 0.05  # blended tiles approximate the whole frame


def test_long_clip_memory_is_bounded(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 s at 24 fps (481 frames) decoded in chunks: peak RSS over the loaded model stays under
    the capacity estimate and under a fixed bound (reported, not timed)."""
    monkeypatch.setattr(engine.settings, "vae_tiling", "on")
    job = replace(JOB, width=128, height=64, duration=20, fps=24, steps=1, guidance=1.0)
    plan = engine.plan(job)
    assert plan.tiled_decode
    with PeakRSS() as rss:
        (result,) = engine.generate(job)
    assert result.frames.shape == (480, 64, 128, 3)
    estimate = plan.estimate.peak(tiled=True)
    whole = plan.estimate.peak(tiled=False)
    print(
        f"\n20 s clip, 128x64, chunked decode: peak RSS +{rss.delta / 2**20:.0f} MB "
        f"(estimate {estimate / 2**20:.0f} MB; whole-clip decode estimate {whole / 2**20:.0f} MB; "
        f"frames {result.frames.nbytes / 2**20:.0f} MB)"
    )
    assert rss.delta < 256 * 2**20  # the stated bound: chunked decode of a 20 s clip at this size
