"""Whole sampling runs: ltxserve's engine (its preset, schedule, guidance and pipeline call) on the
converted release file against ltx-pipelines 1.0.0's own denoising loop over ltx-core's modules,
both started from the same initial noise (drawn by ltx-core's GaussianNoiser and injected into the
engine's pipeline call). Final latents and decoded video/audio are compared."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from ltx_core.components.diffusion_steps import EulerDiffusionStep
from ltx_core.components.guiders import CFGGuider
from ltx_core.components.noisers import GaussianNoiser
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.model.transformer.model import X0Model
from ltx_core.types import VideoPixelShape
from ltx_pipelines.utils import constants
from ltx_pipelines.utils.helpers import (
    denoise_audio_video,
    guider_denoising_func,
    noise_audio_state,
    noise_video_state,
    simple_denoising_func,
)
from ltx_pipelines.utils.samplers import euler_denoising_loop
from ltx_pipelines.utils.types import PipelineComponents

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob
from ltxserve.engine.engine import negative_prompt
from ltxserve.presets import DISTILLED_SIGMAS, STAGE_2_SIGMAS, ltx2_scheduler_sigmas
from tests.parity.conftest import Converted, record
from tests.parity.reference import (
    TEXT_HIDDEN,
    TEXT_STATES,
    TINY_UPSAMPLER,
    build_upsampler,
    errors,
    save_upsampler,
)

#: Sampling compounds per-step rounding over the steps (and CFG multiplies differences by the scale):
#: 1e-4 of the magnitude is still ~1000x below what any real difference (a sigma, a mask, a guidance
#: term) produces here.
REL_TOL = 1e-4

SEED = 1234


def _components() -> PipelineComponents:
    components = PipelineComponents(torch.float32, torch.device("cpu"))
    components.video_latent_channels = 8  # the tiny model's (ltx-pipelines fixes 128)
    return components


@dataclass
class Run:
    video: torch.Tensor  # normalized latents (B, C, F, H, W)
    audio: torch.Tensor  # normalized latents (B, C, T, M)


def _engine(ltx20: Converted, tiny_model_dir: Path, tmp_path: Path, preset: str) -> Engine:
    return Engine.load(
        Settings(
            data_dir=tmp_path,
            model_path=str(ltx20.checkpoint),
            text_encoder_path=str(tiny_model_dir),
            model_preset=preset,
            max_sequence_length=128,
            two_stage="off",
        )
    )


def _contexts(ltx20: Converted, engine: Engine, embeds: dict[str, Any], key: str) -> tuple[Any, Any]:
    """The engine's Gemma hidden states (packed by the pipeline) through ltx-core's connectors."""
    packed, mask = embeds[key], embeds[f"{key}_mask"]
    states = packed.view(*packed.shape[:2], TEXT_HIDDEN, TEXT_STATES).unbind(-1)
    side = getattr(engine.t2v.tokenizer, "padding_side", "left")
    out = ltx20.reference.embeddings.process_hidden_states(states, mask, padding_side=side)
    return out.video_encoding, out.audio_encoding


def _noise(shape: VideoPixelShape) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial noise ltx-pipelines draws for a seed (video first, then audio)."""
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED))
    args = {"conditionings": [], "components": _components(), "dtype": torch.float32, "device": "cpu"}
    video, _ = noise_video_state(output_shape=shape, noiser=noiser, **args)
    audio, _ = noise_audio_state(output_shape=shape, noiser=noiser, **args)
    return video.latent, audio.latent


def _reference(shape: VideoPixelShape, sigmas: torch.Tensor, denoise_fn: Any) -> Run:
    video, audio = denoise_audio_video(
        output_shape=shape,
        conditionings=[],
        noiser=GaussianNoiser(torch.Generator().manual_seed(SEED)),
        sigmas=sigmas,
        stepper=EulerDiffusionStep(),
        denoising_loop_fn=lambda s, v, a, stepper: euler_denoising_loop(s, v, a, stepper, denoise_fn),
        components=_components(),
        dtype=torch.float32,
        device=torch.device("cpu"),
    )
    return Run(video.latent, audio.latent)


def _ours(engine: Engine, job: GenerationJob, shape: VideoPixelShape) -> Run:
    pipe = engine.t2v
    run = engine.plan(job)
    sampling = engine.preset.sampling(job.steps, job.guidance)
    embeds = engine.encode(job.prompt, negative_prompt(job, sampling.cfg), sampling.cfg)
    video_noise, audio_noise = _noise(shape)
    audio_vae = pipe.audio_vae
    video, audio = engine._denoise(
        pipe,
        job,
        run,
        sampling,
        (job.width, job.height),
        [torch.Generator().manual_seed(SEED)],
        embeds,
        lambda _step: None,
        None,
        latents=video_noise,  # packed and normalized: used as is
        audio_latents=audio_noise * audio_vae.latents_std + audio_vae.latents_mean,  # normalized inside
    )
    vae = pipe.vae
    video = (video - vae.latents_mean.view(1, -1, 1, 1, 1)) / vae.latents_std.view(1, -1, 1, 1, 1)
    patched = audio.permute(0, 2, 1, 3).flatten(2)
    patched = (patched - audio_vae.latents_mean) / audio_vae.latents_std
    audio = patched.view(audio.shape[0], audio.shape[2], audio.shape[1], audio.shape[3]).permute(0, 2, 1, 3)
    return Run(video, audio)


def _compare(name: str, ours: Run, theirs: Run, ltx20: Converted, engine: Engine) -> None:
    for part, a_, b_ in (
        ("video latents", ours.video, theirs.video),
        ("audio latents", ours.audio, theirs.audio),
    ):
        assert a_.shape == b_.shape, part
        a, r = errors(a_, b_)
        record(f"{name}: {part}", a, r)
        assert r < REL_TOL, part
    # decoded: ltx-core's decoder un-normalizes inside; the engine's VAE gets un-normalized latents
    vae = engine.t2v.vae
    with torch.no_grad():
        frames_theirs = ltx20.reference.decoder(theirs.video)
        frames_ours = vae.decode(
            ours.video * vae.latents_std.view(1, -1, 1, 1, 1) + vae.latents_mean.view(1, -1, 1, 1, 1),
            return_dict=False,
        )[0]
    a, r = errors(frames_ours, frames_theirs)
    record(f"{name}: decoded frames", a, r)
    assert r < REL_TOL


JOB = GenerationJob(
    prompt="a red kite over the sea",
    width=64,
    height=64,
    duration=1,
    fps=9,
    steps=8,
    guidance=1.0,
    seeds=(SEED,),
)
SHAPE = VideoPixelShape(batch=1, frames=9, height=64, width=64, fps=9.0)


@pytest.fixture(scope="module")
def distilled(ltx20: Converted, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine(ltx20, tiny_model_dir, tmp_path_factory.mktemp("distilled"), "distilled")


@pytest.fixture(scope="module")
def dev(ltx20: Converted, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine(ltx20, tiny_model_dir, tmp_path_factory.mktemp("dev"), "dev")


def test_schedules_are_ltx_pipelines_constants() -> None:
    assert [*DISTILLED_SIGMAS, 0.0] == constants.DISTILLED_SIGMA_VALUES
    assert [*STAGE_2_SIGMAS, 0.0] == constants.STAGE_2_DISTILLED_SIGMA_VALUES
    for steps in (2, 8, 30, 40, 100):
        assert torch.equal(torch.tensor(ltx2_scheduler_sigmas(steps)), LTX2Scheduler().execute(steps)[:-1])


def test_distilled_8_steps_match_ltx_pipelines(ltx20: Converted, distilled: Engine) -> None:
    """DistilledPipeline's stage: DISTILLED_SIGMA_VALUES, simple_denoising_func (no guidance)."""
    embeds = distilled.encode(JOB.prompt, "", False)
    video_ctx, audio_ctx = _contexts(ltx20, distilled, embeds, "pos")
    denoise = simple_denoising_func(video_ctx, audio_ctx, X0Model(ltx20.reference.transformer))
    sigmas = torch.tensor(constants.DISTILLED_SIGMA_VALUES)
    with torch.no_grad():
        theirs = _reference(SHAPE, sigmas, denoise)
        ours = _ours(distilled, JOB, SHAPE)
    _compare("distilled 8 steps", ours, theirs, ltx20, distilled)


def test_dev_cfg_matches_ltx_pipelines(ltx20: Converted, dev: Engine) -> None:
    """The dev stage 1 as ltx-pipelines runs LTX-2.0 with CFG only: LTX2Scheduler sigmas,
    guider_denoising_func with CFGGuider, DEFAULT_NEGATIVE_PROMPT when none is given."""
    job = GenerationJob(**{**JOB.__dict__, "steps": 6, "guidance": 4.0})
    embeds = dev.encode(job.prompt, negative_prompt(job, True), True)
    assert negative_prompt(job, True) == constants.DEFAULT_NEGATIVE_PROMPT
    v_pos, a_pos = _contexts(ltx20, dev, embeds, "pos")
    v_neg, a_neg = _contexts(ltx20, dev, embeds, "neg")
    transformer = X0Model(ltx20.reference.transformer)
    denoise = guider_denoising_func(CFGGuider(4.0), v_pos, v_neg, a_pos, a_neg, transformer)
    with torch.no_grad():
        theirs = _reference(SHAPE, LTX2Scheduler().execute(job.steps), denoise)
        ours = _ours(dev, job, SHAPE)
    _compare("dev CFG 4, 6 steps", ours, theirs, ltx20, dev)


@dataclass
class TwoStage:
    engine: Engine
    upsampler: torch.nn.Module


@pytest.fixture(scope="module")
def two_stage(ltx20: Converted, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoStage:
    """The distilled preset with ltx-core's x2 upsampler, two-stage above 64x64."""
    tmp_path = tmp_path_factory.mktemp("two-stage")
    upsampler = build_upsampler()
    up_path = save_upsampler(
        upsampler, TINY_UPSAMPLER, tmp_path / "ltx-2-spatial-upscaler-x2-1.0.safetensors"
    )
    engine = Engine.load(
        Settings(
            data_dir=tmp_path,
            model_path=str(ltx20.checkpoint),
            text_encoder_path=str(tiny_model_dir),
            model_preset="distilled",
            max_sequence_length=128,
            latent_upsampler_path=str(up_path),
            two_stage_above_pixels=64 * 64,
        )
    )
    return TwoStage(engine, upsampler)


def test_distilled_two_stage_matches_ltx_pipelines(
    ltx20: Converted, two_stage: TwoStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DistilledPipeline: stage 1 at half size, ltx-core's upsample_video (x2 spatial upsampler on
    un-normalized latents), then the 3 STAGE_2 sigmas from the upsampled latents re-noised to the
    first of them. One generator feeds both stages on both sides; the engine's stage-1 call gets the
    reference's stage-1 noise injected (it still draws, zero-scaled, the same amount from it), so the
    refine noise is the same draw."""
    from ltx_core.model.upsampler.model import upsample_video

    engine, upsampler = two_stage.engine, two_stage.upsampler
    job = GenerationJob(**{**JOB.__dict__, "width": 128, "height": 128})
    run = engine.plan(job)
    assert run.two_stage
    embeds = engine.encode(job.prompt, "", False)
    video_ctx, audio_ctx = _contexts(ltx20, engine, embeds, "pos")
    transformer = X0Model(ltx20.reference.transformer)

    def loop(s: torch.Tensor, v: Any, a: Any, stepper: Any) -> Any:
        return euler_denoising_loop(
            s, v, a, stepper, simple_denoising_func(video_ctx, audio_ctx, transformer)
        )

    half = SHAPE._replace(height=64, width=64)
    full = SHAPE._replace(height=128, width=128)
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED))
    common = {"stepper": EulerDiffusionStep(), "denoising_loop_fn": loop, "components": _components()}
    common |= {"dtype": torch.float32, "device": torch.device("cpu"), "conditionings": [], "noiser": noiser}
    with torch.no_grad():
        v1, a1 = denoise_audio_video(
            output_shape=half, sigmas=torch.tensor(constants.DISTILLED_SIGMA_VALUES), **common
        )
        stage2 = torch.tensor(constants.STAGE_2_DISTILLED_SIGMA_VALUES)
        upscaled = upsample_video(v1.latent, ltx20.reference.encoder, upsampler)
        v2, a2 = denoise_audio_video(
            output_shape=full,
            sigmas=stage2,
            noise_scale=stage2[0],
            initial_video_latent=upscaled,
            initial_audio_latent=a1.latent,
            **common,
        )
    theirs = Run(v2.latent, a2.latent)

    # ours: the engine's own two-stage path; stage-1 noise injected, outputs of each stage captured
    video_noise, audio_noise = _noise(half)
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = engine._denoise

    def denoise(*args: Any, **kwargs: Any) -> Any:
        if not outputs:
            std, mean = engine.t2v.audio_vae.latents_std, engine.t2v.audio_vae.latents_mean
            kwargs |= {"latents": video_noise, "audio_latents": audio_noise * std + mean}
        out = original(*args, **kwargs)
        outputs.append(out)
        return out

    monkeypatch.setattr(engine, "_denoise", denoise)
    with torch.no_grad():
        engine.generate(job)
    assert len(outputs) == 2
    video, audio = outputs[1]
    vae, audio_vae = engine.t2v.vae, engine.t2v.audio_vae
    video = (video - vae.latents_mean.view(1, -1, 1, 1, 1)) / vae.latents_std.view(1, -1, 1, 1, 1)
    patched = (audio.permute(0, 2, 1, 3).flatten(2) - audio_vae.latents_mean) / audio_vae.latents_std
    audio = patched.view(audio.shape[0], audio.shape[2], audio.shape[1], audio.shape[3]).permute(0, 2, 1, 3)
    _compare("distilled two-stage", Run(video, audio), theirs, ltx20, engine)


def test_image_to_video_refine_reencodes_the_image(
    ltx20: Converted, two_stage: TwoStage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightricks builds the stage-2 conditioning from the input image at full size
    (ltx-pipelines ``load_image_conditioning``: CRF 33 through H.264, then ltx-core's encoder) and
    holds it as latent frame 0 of the refine. The engine's refine gets the same latent frame 0."""
    from ltx_pipelines.utils.media_io import load_image_conditioning
    from PIL import Image

    engine = two_stage.engine
    rng = torch.Generator().manual_seed(6)
    pixels = (torch.rand(128, 128, 3, generator=rng) * 255).to(torch.uint8).numpy()
    path = tmp_path / "frame.png"
    Image.fromarray(pixels).save(path)
    job = GenerationJob(
        **{**JOB.__dict__, "width": 128, "height": 128, "image": Image.open(path).convert("RGB")}
    )
    assert engine.plan(job).two_stage
    calls: list[dict[str, Any]] = []
    original = engine._denoise

    def denoise(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_denoise", denoise)
    with torch.no_grad():
        engine.generate(job)
        vae = engine.i2v.vae
        ours = calls[1]["latents"][:, :, :1]  # un-normalized, as the pipeline takes it
        ours = (ours - vae.latents_mean.view(1, -1, 1, 1, 1)) / vae.latents_std.view(1, -1, 1, 1, 1)
        image = load_image_conditioning(str(path), 128, 128, torch.float32, torch.device("cpu"))
        theirs = ltx20.reference.encoder(image)  # (1, C, 1, H, W) already
    a, r = errors(ours, theirs)
    record("I2V refine: latent frame 0 (image at full size, CRF 33)", a, r)
    assert r < 1e-5
