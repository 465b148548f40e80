"""The generation engine: load LTX-2 once, then turn ``GenerationJob``s into frames and audio.

It runs diffusers' own ``LTX2Pipeline`` / ``LTX2ImageToVideoPipeline`` (one set of weights for
both) and adds what a service needs around them: exact clip length, per-result seeds, prompt
enhancement through the pipeline's own path, progress, cooperative cancellation, a capacity
check before any work, and per-stage timings. It knows nothing of HTTP, JSON or databases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltxserve.config import Settings
from ltxserve.engine.cache import LRUCache, image_digest
from ltxserve.engine.capacity import (
    CapacityError,
    GiB,
    JobEstimate,
    ModelShape,
    describe,
    estimate,
    limiting_parameter,
)
from ltxserve.engine.loader import ModelSource, load_pipelines, resolve_model, select_device
from ltxserve.engine.planning import FramePlan, fit_audio, plan_frames
from ltxserve.engine.types import GenerationJob, GenerationResult, ProgressCallback, StageTimings
from ltxserve.logs import get_logger

log = get_logger(__name__)


class GenerationCancelled(Exception):
    """Raised out of the denoising loop when the job's cancel event is set."""


@dataclass(frozen=True)
class RunPlan:
    """How one job will run, decided by the capacity check."""

    frames: FramePlan
    batched: bool  # all results in one pipeline call
    tiled_decode: bool
    estimate: JobEstimate


def sampler_kwargs(guidance: float) -> dict[str, Any]:
    """The guidance settings passed to the pipeline for a ``CFGScale``.

    LTX-2.0 samples with classifier-free guidance only: spatio-temporal guidance, modality
    isolation and guidance rescale (LTX-2.3 defaults in diffusers) are off, and the legacy
    2.0 cross-attention timestep is used. At ``guidance <= 1`` guidance is off entirely: one
    transformer row per result per step, the negative prompt never encoded.
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


class Engine:
    """Load once, generate many. One generation at a time (the pipeline object holds state)."""

    def __init__(self, settings: Settings, t2v: Any, i2v: Any, source: ModelSource) -> None:
        import torch

        self.settings = settings
        self.source = source
        self.t2v = t2v
        self.i2v = i2v
        self.device, self.dtype = select_device(settings)
        self._lock = threading.Lock()
        self._torch = torch
        tcfg = t2v.transformer.config
        self.shape = ModelShape(
            inner_dim=tcfg.num_attention_heads * tcfg.attention_head_dim,
            audio_inner_dim=tcfg.audio_num_attention_heads * tcfg.audio_attention_head_dim,
            spatial_ratio=t2v.vae_spatial_compression_ratio,
            vae_patch=t2v.vae.config.patch_size,
            vae_last_channels=t2v.vae.config.decoder_block_out_channels[0],
            act_bytes=torch.finfo(self.dtype).bits // 8,
        )
        self.sample_rate: int = t2v.vocoder.config.output_sampling_rate
        # One engine serves one model, so the caches need no model in their keys.
        self.text_cache: LRUCache[dict[str, Any]] = LRUCache(settings.text_cache_size)
        self.enhance_cache: LRUCache[str] = LRUCache(settings.text_cache_size)
        self.temporal_ratio: int = t2v.vae_temporal_compression_ratio

    @classmethod
    def load(cls, settings: Settings) -> Engine:
        source = resolve_model(settings)
        t0 = time.perf_counter()
        t2v, i2v = load_pipelines(settings, source)
        engine = cls(settings, t2v, i2v, source)
        log.info(
            "model ready",
            location=source.location,
            tiny=source.is_tiny,
            device=str(engine.device),
            dtype=str(engine.dtype),
            seconds=round(time.perf_counter() - t0, 2),
        )
        return engine

    # --- capacity ---------------------------------------------------------------------------

    def memory_budget(self) -> int:
        """Bytes a job may use on top of the loaded weights."""
        if self.settings.memory_limit_gb is not None:
            return int(self.settings.memory_limit_gb * GiB)
        if self.device.type == "cuda":
            free, _total = self._torch.cuda.mem_get_info(self.device)
            return int(free * 0.9)
        import psutil

        return int(psutil.virtual_memory().available * 0.8)

    def plan(self, job: GenerationJob) -> RunPlan:
        """Decide batching and tiling, or raise ``CapacityError`` naming what to lower."""
        frames = plan_frames(job.duration, job.fps, self.temporal_ratio)
        cfg = job.guidance > 1.0
        single = estimate(self.shape, frames, job.width, job.height, 1, cfg)
        if single.video_tokens > self.settings.max_video_tokens:
            param = limiting_parameter(frames, job.width, job.height)
            raise CapacityError(
                param,
                f"{job.width}x{job.height} for {job.duration} s at {job.fps} fps needs "
                f"{single.video_tokens:,} video tokens; this server accepts at most "
                f"{self.settings.max_video_tokens:,}. Lower {param}.",
            )
        budget = self.memory_budget()
        tiling = self.settings.vae_tiling
        n = len(job.seeds)
        options: list[tuple[bool, bool]] = []  # (batched, tiled), cheapest first
        for tiled in [False] if tiling == "off" else [True] if tiling == "on" else [False, True]:
            if n > 1 and self.settings.batch_results:
                options.append((True, tiled))
            options.append((False, tiled))
        for batched, tiled in options:
            est = estimate(self.shape, frames, job.width, job.height, n if batched else 1, cfg)
            if est.peak(tiled) <= budget:
                return RunPlan(frames, batched, tiled, est)
        param = limiting_parameter(frames, job.width, job.height)
        need = single.peak(tiling != "off")
        raise CapacityError(
            param,
            f"{job.width}x{job.height} for {job.duration} s at {job.fps} fps needs about "
            f"{describe(need)} of working memory; {describe(budget)} is available. Lower {param}.",
        )

    # --- generation -------------------------------------------------------------------------

    def generate(
        self,
        job: GenerationJob,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GenerationResult]:
        """Run one job; results come back in ``job.seeds`` order."""
        return [r for batch in self.generate_batches(job, progress, cancel) for r in batch]

    def generate_batches(
        self,
        job: GenerationJob,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[list[GenerationResult], None, None]:
        """Yield results as each pipeline call finishes (all at once when batched).

        The worker stores each batch before the next is generated, so a crash keeps what was
        already made. The engine is held for the whole iteration.
        """
        if not job.seeds:
            raise ValueError("a job needs at least one seed")
        with self._lock:
            yield from self._generate(job, progress, cancel)

    def _generate(
        self,
        job: GenerationJob,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> Generator[list[GenerationResult], None, None]:
        # 1. plan frames, batching and tiling (raises CapacityError before any work)
        run = self.plan(job)
        pipe = self.i2v if job.image is not None else self.t2v
        self._set_tiling(run.tiled_decode)
        timings = StageTimings()
        cfg = job.guidance > 1.0

        # 2. prompt enhancement, through the pipeline's own enhancer and the loaded text model
        prompt = job.prompt
        if job.enhance_prompt:
            t0 = time.perf_counter()
            prompt = self.enhance(job)
            timings.enhance = time.perf_counter() - t0
            log.info("prompt enhanced", original=job.prompt, enhanced=prompt)

        # 3. encode the prompt once for every result (and the negative only under guidance)
        t0 = time.perf_counter()
        embeds = self.encode(prompt, job.negative_prompt, cfg)
        timings.text_encode = time.perf_counter() - t0

        # 4. denoise + decode: one batched call, or one call per result
        groups = [list(job.seeds)] if run.batched else [[s] for s in job.seeds]
        total_steps = job.steps * len(groups)
        for g, seeds in enumerate(groups):
            done_before = g * job.steps

            def on_step(step: int, done_before: int = done_before) -> None:
                if progress is not None:
                    progress(done_before + step, total_steps)

            frames, audio, stage = self._call(pipe, job, run.frames, seeds, embeds, on_step, cancel)
            timings.denoise += stage.denoise
            timings.video_decode += stage.video_decode
            timings.audio_decode += stage.audio_decode
            # 5. exact length: drop surplus frames, fit audio to the duration
            yield [
                GenerationResult(
                    seed=seed,
                    frames=frames[i, : run.frames.requested_frames],
                    fps=job.fps,
                    audio=fit_audio(audio[i], self.sample_rate, job.duration) if job.audio else None,
                    sample_rate=self.sample_rate,
                    prompt=prompt,
                    timings=timings,
                )
                for i, seed in enumerate(seeds)
            ]

    def enhance(self, job: GenerationJob) -> str:
        """The pipeline's own prompt enhancer on the loaded text model, cached per input.

        It samples with a fixed seed (``enhance_seed``, diffusers' default 10) rather than the
        result seed, so the same prompt (and image) always enhances the same way: results of one
        task share one enhanced prompt, and repeated prompts are enhanced once.
        """
        image = self._condition_image(job)
        key = (
            job.prompt,
            image_digest(image),
            self.settings.enhance_max_new_tokens,
            self.settings.enhance_seed,
        )
        return self.enhance_cache.get_or_compute(key, lambda: self._enhance(job.prompt, image))

    def _enhance(self, prompt: str, image: Any) -> str:
        from diffusers.pipelines.ltx2.utils import I2V_DEFAULT_SYSTEM_PROMPT, T2V_DEFAULT_SYSTEM_PROMPT

        pipe = self.i2v if image is not None else self.t2v
        system = I2V_DEFAULT_SYSTEM_PROMPT if image is not None else T2V_DEFAULT_SYSTEM_PROMPT
        out = pipe.enhance_prompt(
            prompt=prompt,
            system_prompt=system,
            max_new_tokens=self.settings.enhance_max_new_tokens,
            seed=self.settings.enhance_seed,
            device=self.device,
            image=image,
        )
        enhanced = (out[0] if out else "").strip()
        return enhanced or prompt

    def encode(self, prompt: str, negative: str, cfg: bool) -> dict[str, Any]:
        """Text-encoder outputs for a prompt (and the negative only under guidance), cached."""
        key = (prompt, negative if cfg else None, cfg, self.settings.max_sequence_length)
        return self.text_cache.get_or_compute(key, lambda: self._encode(prompt, negative, cfg))

    def _encode(self, prompt: str, negative: str, cfg: bool) -> dict[str, Any]:
        pos, pos_mask, neg, neg_mask = self.t2v.encode_prompt(
            prompt=prompt,
            negative_prompt=negative,
            do_classifier_free_guidance=cfg,
            max_sequence_length=self.settings.max_sequence_length,
            device=self.device,
        )
        return {"pos": pos, "pos_mask": pos_mask, "neg": neg, "neg_mask": neg_mask}

    def _condition_image(self, job: GenerationJob) -> Any:
        if job.image is None:
            return None
        from ltxserve.media.images import fit_cover

        return fit_cover(job.image, job.width, job.height)

    def _call(
        self,
        pipe: Any,
        job: GenerationJob,
        frames: FramePlan,
        seeds: list[int],
        embeds: dict[str, Any],
        on_step: Any,
        cancel: threading.Event | None,
    ) -> tuple[np.ndarray, np.ndarray, StageTimings]:
        torch = self._torch
        n = len(seeds)
        stage = StageTimings()
        marks: dict[str, float] = {}

        def callback(p: Any, step: int, _t: Any, _kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(step + 1)
            if step + 1 == job.steps:
                marks["denoised"] = time.perf_counter()
            if cancel is not None and cancel.is_set():
                p._interrupt = True  # the pipeline's own flag; raising stops before the VAE decode
                raise GenerationCancelled()
            return {}

        kwargs: dict[str, Any] = {
            "prompt_embeds": embeds["pos"].repeat(n, 1, 1),
            "prompt_attention_mask": embeds["pos_mask"].repeat(n, 1),
            "height": job.height,
            "width": job.width,
            "num_frames": frames.generated_frames,
            "frame_rate": float(job.fps),
            "num_inference_steps": job.steps,
            "generator": [torch.Generator(device="cpu").manual_seed(s) for s in seeds],
            "output_type": "np",
            "callback_on_step_end": callback,
            "max_sequence_length": self.settings.max_sequence_length,
            **sampler_kwargs(job.guidance),
        }
        if job.guidance > 1.0:
            kwargs["negative_prompt_embeds"] = embeds["neg"].repeat(n, 1, 1)
            kwargs["negative_prompt_attention_mask"] = embeds["neg_mask"].repeat(n, 1)
        if job.image is not None:
            kwargs["image"] = self._condition_image(job)

        t0 = time.perf_counter()
        with self._timed(pipe.vae, "decode", stage, "video_decode"), self._timed_audio(pipe, stage):
            out = pipe(**kwargs)
        end = time.perf_counter()
        stage.denoise = marks.get("denoised", end) - t0
        video = np.asarray(out.frames)  # (B, F, H, W, 3) float in [0, 1]
        frames_u8 = (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        audio = out.audio.float().cpu().numpy().astype(np.float32)  # (B, C, S)
        return frames_u8, audio, stage

    def _set_tiling(self, tiled: bool) -> None:
        vae = self.t2v.vae
        if tiled:
            vae.enable_tiling()
            vae.use_framewise_decoding = True
        else:
            vae.disable_tiling()
            vae.use_framewise_decoding = False

    @contextmanager
    def _timed(self, obj: Any, method: str, stage: StageTimings, field: str) -> Iterator[None]:
        """Time calls of ``obj.method`` into ``stage.field`` (an instance attribute, removed after)."""
        original = getattr(obj, method)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                setattr(stage, field, getattr(stage, field) + time.perf_counter() - t0)

        setattr(obj, method, wrapper)
        try:
            yield
        finally:
            delattr(obj, method)

    @contextmanager
    def _timed_audio(self, pipe: Any, stage: StageTimings) -> Iterator[None]:
        """Audio decode = audio VAE decode + vocoder (a module call, timed with hooks)."""
        t0: list[float] = []

        def pre(*_a: Any) -> None:
            t0.append(time.perf_counter())

        def post(*_a: Any) -> None:
            stage.audio_decode += time.perf_counter() - t0.pop()

        handles = [
            pipe.vocoder.register_forward_pre_hook(pre),
            pipe.vocoder.register_forward_hook(post),
        ]
        try:
            with self._timed(pipe.audio_vae, "decode", stage, "audio_decode"):
                yield
        finally:
            for h in handles:
                h.remove()
