"""Exactness claims of the speed options (the timings themselves live in bench/, not here).

"Exact" means: same seed, identical frames and audio, or max abs difference <= 1e-5 in float.
"""

from __future__ import annotations

import numpy as np
import torch

from ltxserve.config import Settings
from ltxserve.engine import Engine, sampler_kwargs
from ltxserve.presets import ltx2_scheduler_sigmas

EXACT = 1e-5


def test_batched_results_are_exact(engine: Engine) -> None:
    """numberResults in one pass (a generator per result) == one pass per result, in float."""
    pipe = engine.t2v
    kwargs = {
        "prompt": "a harbour at night",
        "height": 128,
        "width": 192,
        "num_frames": 9,
        "frame_rate": 24.0,
        "num_inference_steps": 3,
        "output_type": "np",
        "max_sequence_length": engine.settings.max_sequence_length,
        **sampler_kwargs(3.0),
    }
    seeds = (5, 6, 7)
    batched = pipe(
        generator=[torch.Generator().manual_seed(s) for s in seeds], num_videos_per_prompt=3, **kwargs
    )
    for i, seed in enumerate(seeds):
        single = pipe(generator=[torch.Generator().manual_seed(seed)], **kwargs)
        assert np.abs(np.asarray(batched.frames[i]) - np.asarray(single.frames[0])).max() <= EXACT
        assert (batched.audio[i] - single.audio[0]).abs().max().item() <= EXACT


def test_engine_matches_plain_diffusers(engine: Engine) -> None:
    """The engine's own path (pre-encoded prompt, trimming) adds nothing to what diffusers computes."""
    from dataclasses import replace

    from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

    from ltxserve.engine import GenerationJob, plan_frames

    job = GenerationJob(
        prompt="a windmill", width=192, height=128, duration=1, fps=12, steps=3, guidance=3.0, seeds=(21,)
    )
    engine.text_cache.clear()
    (ours,) = engine.generate(job)
    plan = plan_frames(job.duration, job.fps)
    # the dev recipe: LTX2Scheduler sigmas used as given (no resolution shift), Lightricks' default
    # negative prompt under CFG when the request has none
    pipe = engine.t2v
    shifting = pipe.scheduler
    pipe.scheduler = type(shifting).from_config(
        shifting.config, use_dynamic_shifting=False, shift=1.0, shift_terminal=None
    )
    ref = pipe(
        prompt=job.prompt,
        negative_prompt=DEFAULT_NEGATIVE_PROMPT,
        sigmas=list(ltx2_scheduler_sigmas(job.steps)),
        height=job.height,
        width=job.width,
        num_frames=plan.generated_frames,
        frame_rate=float(job.fps),
        num_inference_steps=job.steps,
        generator=torch.Generator().manual_seed(21),
        output_type="np",
        max_sequence_length=engine.settings.max_sequence_length,
        **sampler_kwargs(job.guidance),
    )
    pipe.scheduler = shifting
    frames = (np.clip(np.asarray(ref.frames[0]), 0, 1) * 255 + 0.5).astype(np.uint8)[: plan.requested_frames]
    assert np.array_equal(ours.frames, frames)
    assert ours.audio is not None
    n = ours.audio.shape[-1]  # the engine cut the audio to the duration
    assert np.abs(ours.audio - ref.audio[0, :, :n].numpy()).max() <= EXACT
    # ...and a cache hit is the same computation again.
    (again,) = engine.generate(replace(job))
    assert np.array_equal(again.frames, ours.frames)


def test_lossy_options_are_off_by_default() -> None:
    settings = Settings()
    assert settings.fp8_weights is False
    assert settings.compile_transformer is False
    assert settings.max_sequence_length == 1024  # shorter padding changes LTX-2.0's conditioning


def test_fp8_weights_are_lossy_but_close(engine_settings: Settings) -> None:
    """FP8 storage changes the output (so it is off by default) but stays near the exact path."""
    from ltxserve.engine import GenerationJob

    job = GenerationJob(
        prompt="a lighthouse", width=128, height=128, duration=1, fps=8, steps=3, guidance=1.0, seeds=(4,)
    )
    (exact,) = Engine.load(engine_settings).generate(job)
    (fp8,) = Engine.load(engine_settings.model_copy(update={"fp8_weights": True})).generate(job)
    diff = np.abs(exact.frames.astype(int) - fp8.frames.astype(int))
    assert diff.max() > 0
    mse = float(np.mean(diff.astype(float) ** 2))
    assert 10 * np.log10(255**2 / mse) > 25  # PSNR: a small perturbation, not a broken model


def test_step_cache_skips_transformer_passes_lossily(engine_settings: Settings) -> None:
    from ltxserve.engine import GenerationJob
    from ltxserve.engine.accel import cached_steps

    job = GenerationJob(
        prompt="a lighthouse", width=128, height=128, duration=1, fps=8, steps=10, guidance=3.0, seeds=(4,)
    )
    exact_engine = Engine.load(engine_settings)
    cached_engine = Engine.load(engine_settings.model_copy(update={"step_cache_every": 2}))
    calls: list[int] = []
    block = cached_engine.t2v.transformer.transformer_blocks[0]  # runs only when the model really runs
    handle = block.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        (cached,) = cached_engine.generate(job)
    finally:
        handle.remove()
    (exact,) = exact_engine.generate(job)
    assert len(calls) == 10 - len(cached_steps(10, 2)) == 7
    diff = np.abs(exact.frames.astype(int) - cached.frames.astype(int))
    assert diff.max() > 0  # lossy, hence off by default
    assert Settings().step_cache_every == 0
