"""The generation engine: load LTX-2 once, then turn ``GenerationJob``s into frames and audio.

It runs diffusers' own ``LTX2Pipeline`` / ``LTX2ImageToVideoPipeline`` (one set of weights for
both) and adds what a service needs around them: exact clip length, per-result seeds, prompt
enhancement through the pipeline's own path, progress, cooperative cancellation, a capacity
check before any work, and per-stage timings. How it samples comes from the model's preset
(``presets``: dev, distilled); large frames run two-stage (``two_stage``) and the pipelines stop at
latents so long clips decode in chunks (``decode``). It knows nothing of HTTP, JSON or databases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltxserve import tracing
from ltxserve.config import Settings
from ltxserve.engine import accel, decode, recipe, resume, two_stage
from ltxserve.engine.cache import LRUCache, image_digest
from ltxserve.engine.capacity import (
    CapacityError,
    Chunking,
    GiB,
    JobEstimate,
    ModelShape,
    describe,
    estimate,
    limiting_parameter,
)
from ltxserve.engine.loader import load_pipelines, resolve_model, select_device
from ltxserve.engine.planning import FramePlan, fit_audio, plan_frames
from ltxserve.engine.resume import Checkpointing, StepState
from ltxserve.engine.tiny import TINY_GIBBERISH
from ltxserve.engine.types import (
    GenerationJob,
    GenerationResult,
    ModelSource,
    ProgressCallback,
    ResultSink,
    StageTimings,
)
from ltxserve.logs import get_logger, printable
from ltxserve.presets import Sampling, ltx20_guidance_kwargs

log = get_logger(__name__)


#: One step at LTX-2's common size, run at load when the transformer is compiled.
WARMUP_JOB = GenerationJob(
    prompt="warm-up",
    width=768,
    height=512,
    duration=2,
    fps=24,
    steps=1,
    guidance=1.0,
    seeds=(0,),
    audio=False,
)


class GenerationCancelled(Exception):
    """Raised out of the denoising loop when the job's cancel event is set."""


@dataclass(frozen=True)
class RunPlan:
    """How one job will run, decided once per generation by the capacity check (``plan``)."""

    frames: FramePlan
    batched: bool  # all results in one pipeline call
    tiled_decode: bool  # chunked decode (engine.decode)
    estimate: JobEstimate
    sampling: Sampling  # the first (or only) stage, after the preset's mapping of steps/CFGScale
    refine: Sampling | None = None  # two-stage: the refine stage (half size, x2 upsampling, refine)
    chunk_frames: int = 16  # latent frames per decode chunk

    @property
    def two_stage(self) -> bool:
        """Half size, x2 latent upsampling, refine (``engine.two_stage``)."""
        return self.refine is not None

    @property
    def steps(self) -> int:
        """Denoising steps per pipeline group (both stages), as progress counts them."""
        return self.sampling.steps + (self.refine.steps if self.refine is not None else 0)

    @property
    def cfg(self) -> bool:
        """Classifier-free guidance in the (first) stage."""
        return self.sampling.cfg


def negative_prompt(job: GenerationJob, cfg: bool) -> str:
    """The request's negative prompt; under guidance without one, Lightricks' default
    (``DEFAULT_NEGATIVE_PROMPT``, ltx-pipelines ``utils/constants.py``, the same text in diffusers'
    ``pipelines/ltx2/utils.py``), as their pipelines use. Unused (never encoded) without guidance."""
    if job.negative_prompt or not cfg:
        return job.negative_prompt
    from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

    return str(DEFAULT_NEGATIVE_PROMPT)


def sampler_kwargs(guidance: float) -> dict[str, Any]:
    """LTX-2.0's guidance kwargs for a ``CFGScale`` (the dev preset's; see ``ltxserve.presets``)."""
    return ltx20_guidance_kwargs(guidance)


class Engine:
    """Load once, generate many. One generation at a time (the pipeline object holds state)."""

    def __init__(
        self, settings: Settings, t2v: Any, i2v: Any, source: ModelSource, upsampler: Any = None
    ) -> None:
        import torch

        self.settings = settings
        self.source = source
        self.t2v = t2v
        self.i2v = i2v
        self.device, self.dtype = select_device(settings)
        self.preset = settings.preset()
        self.upsampler = upsampler  # LTX2LatentUpsamplePipeline, or None: no two-stage
        # dev preset: Lightricks' distilled LoRA, loaded switched off, on for the refine stage only
        self.distilled_lora = two_stage.has_refine_lora(t2v.transformer)
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
            temporal_ratio=t2v.vae_temporal_compression_ratio,
            upsampler_channels=upsampler.latent_upsampler.config.mid_channels if upsampler else 0,
        )
        self.sample_rate: int = t2v.vocoder.config.output_sampling_rate
        self._offload_text_encoder = accel.offload_text_encoder(settings, self.device)
        if self._offload_text_encoder:
            t2v.text_encoder.to("cpu")
        # One engine serves one model, so the caches need no model in their keys.
        self.text_cache: LRUCache[dict[str, Any]] = LRUCache(settings.text_cache_size)
        self.enhance_cache: LRUCache[str] = LRUCache(settings.text_cache_size)
        self.temporal_ratio: int = t2v.vae_temporal_compression_ratio
        self._fingerprint: str | None = None
        # multi-rank jobs (engine.parallel): (guidance groups, sequence ranks); only rank 0 decodes
        self.split: tuple[int, int] = (1, 1)
        self.decodes = True

    @classmethod
    def load(cls, settings: Settings) -> Engine:
        settings = two_stage.with_shipped_parts(settings)  # Lightricks' layout: dev runs two-stage
        source = resolve_model(settings)
        t0 = time.perf_counter()
        t2v, i2v = load_pipelines(settings, source)
        upsampler = two_stage.load_upsampler(settings, source, t2v.vae, *select_device(settings))
        if upsampler is None and two_stage.has_refine_lora(t2v.transformer):
            two_stage.drop_refine_lora(t2v.transformer)
        engine = cls(settings, t2v, i2v, source, upsampler)
        if settings.compile_transformer:
            # Compile now, not on the first client's job: one denoising step at a common size.
            t1 = time.perf_counter()
            engine.generate(WARMUP_JOB)
            log.info("transformer warm-up done", seconds=round(time.perf_counter() - t1, 2))
        log.info(
            "model ready",
            location=source.location,
            tiny=source.is_tiny,
            preset=engine.preset.name,
            two_stage=upsampler is not None and engine.preset.can_refine(engine.distilled_lora),
            recipe=engine.recipe(),
            distilled_lora=engine.distilled_lora,
            device=str(engine.device),
            dtype=str(engine.dtype),
            seconds=round(time.perf_counter() - t0, 2),
        )
        return engine

    def recipe(self) -> str:
        """The reference recipe this deployment runs (``engine.recipe``)."""
        return recipe.deployment(self.preset, self.settings, self.upsampler is not None, self.distilled_lora)

    def job_recipe(self, job: GenerationJob, run: RunPlan) -> str:
        first = self.preset.sampling(job.steps, job.guidance)
        return recipe.job(self.preset, job, first, run.two_stage)

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
        """Decide stages, sampling, batching and decode chunking, or raise ``CapacityError`` naming
        what to lower. Generation plans once, when it starts (free memory is read then); an
        in-process worker's service also calls it at submission, so a job that cannot fit is
        never queued."""
        frames = plan_frames(job.duration, job.fps, self.temporal_ratio)
        first = self.preset.sampling(job.steps, job.guidance)
        staged = two_stage.applies(
            self.preset, self.settings, self.upsampler is not None, job.width, job.height, self.distilled_lora
        )
        refine = self.preset.refine_sampling() if staged else None
        cfg = first.cfg
        context = self.settings.decode_context_frames
        chunkings = [Chunking(c, context) for c in _halvings(self.settings.decode_chunk_frames)]
        single = estimate(self.shape, frames, job.width, job.height, 1, cfg, chunkings[0], staged, self.split)
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
        batch_modes = [True, False] if n > 1 and self.settings.batch_results else [False]
        options: list[tuple[bool, bool, Chunking]] = []  # (batched, chunked, chunking), cheapest first
        for tiled in [False] if tiling == "off" else [True] if tiling == "on" else [False, True]:
            for batched in batch_modes:
                options.extend((batched, tiled, c) for c in (chunkings if tiled else chunkings[:1]))
        for batched, tiled, chunking in options:
            est = estimate(
                self.shape,
                frames,
                job.width,
                job.height,
                n if batched else 1,
                cfg,
                chunking,
                staged,
                self.split,
            )
            if est.peak(tiled) <= budget:
                return RunPlan(frames, batched, tiled, est, first, refine, chunking.chunk_latents)
        param = limiting_parameter(frames, job.width, job.height)
        smallest = estimate(
            self.shape, frames, job.width, job.height, 1, cfg, chunkings[-1], staged, self.split
        )
        need = smallest.peak(tiling != "off")
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
        checkpoint: Checkpointing | None = None,
        sink: ResultSink | None = None,
    ) -> list[GenerationResult]:
        """Run one job; results come back in ``job.seeds`` order."""
        return [r for batch in self.generate_batches(job, progress, cancel, checkpoint, sink) for r in batch]

    def generate_batches(
        self,
        job: GenerationJob,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        checkpoint: Checkpointing | None = None,
        sink: ResultSink | None = None,
    ) -> Generator[list[GenerationResult], None, None]:
        """Yield results as each pipeline call finishes (all at once when batched).

        The worker stores each batch before the next is generated, so a crash keeps what was
        already made. The engine is held for the whole iteration. ``checkpoint``: step
        checkpoints to take, and the state to resume from (``engine.resume``). ``sink`` gets each
        result's audio and frames while they are decoded (the same data the results carry).
        """
        if not job.seeds:
            raise ValueError("a job needs at least one seed")
        with self._lock:
            yield from self._generate(job, progress, cancel, checkpoint, sink)

    def _generate(
        self,
        job: GenerationJob,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        checkpoint: Checkpointing | None = None,
        sink: ResultSink | None = None,
    ) -> Generator[list[GenerationResult], None, None]:
        # 1. plan frames, batching and tiling (raises CapacityError before any work)
        run = self.plan(job)
        pipe = self.i2v if job.image is not None else self.t2v
        timings = StageTimings()
        cfg = run.cfg  # the preset's guidance, not necessarily the request's CFGScale
        note = self.preset.mapping_note(job.steps, job.guidance, run.sampling)
        if note:
            log.info("sampling mapped by preset", note=note)
        log.info("recipe", recipe=self.job_recipe(job, run))

        # 2. prompt enhancement, through the pipeline's own enhancer and the loaded text model
        prompt = job.prompt
        if job.enhance_prompt:
            t0 = time.perf_counter()
            with tracing.span("enhance"):
                prompt = self.enhance(job)
            timings.enhance = time.perf_counter() - t0
            log.info(
                "prompt enhanced",
                original=printable(job.prompt),
                enhanced=printable(prompt),
                **({"note": TINY_GIBBERISH} if self.source.is_tiny else {}),
            )

        # 3. encode the prompt once for every result (and the negative only under guidance)
        t0 = time.perf_counter()
        with tracing.span("text_encode"):
            embeds = self.encode(prompt, negative_prompt(job, cfg), cfg)
        timings.text_encode = time.perf_counter() - t0

        # 4. denoise + decode: one batched call, or one call per result
        groups = [list(job.seeds)] if run.batched else [[s] for s in job.seeds]
        total_steps = run.steps * len(groups)
        key = self.checkpoint_key(job, run) if checkpoint is not None else ""
        start = self._resume_state(checkpoint, key, groups)
        if checkpoint is not None:
            checkpoint.restart_clock(start.progress if start is not None else 0)
        first_index = 0
        for g, seeds in enumerate(groups):
            done_before = g * run.steps

            def on_step(step: int, done_before: int = done_before) -> None:
                if progress is not None:
                    progress(done_before + step, total_steps)

            group_ck = None
            if checkpoint is not None:
                state = start if start is not None and list(start.seeds) == seeds else None
                group_ck = _GroupCheckpoints(checkpoint, key, tuple(seeds), done_before, state)
            frames, audio, stage = self._call(
                pipe, job, run, seeds, embeds, on_step, cancel, group_ck, sink, first_index
            )
            first_index += len(seeds)
            timings.denoise += stage.denoise
            timings.video_decode += stage.video_decode
            timings.vae_decode += stage.vae_decode
            timings.audio_decode += stage.audio_decode
            # 5. exact length: drop surplus frames (audio was fitted to the duration in _call)
            yield [
                GenerationResult(
                    seed=seed,
                    frames=frames[i, : run.frames.requested_frames],
                    fps=job.fps,
                    audio=audio[i] if audio is not None else None,
                    sample_rate=self.sample_rate,
                    prompt=prompt,
                    timings=timings,
                )
                for i, seed in enumerate(seeds)
            ]

    # --- step checkpoints (engine.resume) --------------------------------------------------------

    def fingerprint(self) -> str:
        """The loaded model's identity for checkpoint keys (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = resume.model_fingerprint(self.source.location, self.t2v)
        return self._fingerprint

    def checkpoint_key(self, job: GenerationJob, run: RunPlan) -> str:
        """Checkpoints of ``job`` are valid for a run with this key only: same model, job shape,
        sampling and code versions (the seeds are matched per pipeline group)."""
        image = self._condition_image(job)
        return resume.state_key(
            self.fingerprint(),
            {
                "preset": self.preset.name,
                "dtype": str(self.dtype),
                "prompt": job.prompt,
                "negative": job.negative_prompt,
                "image": image_digest(image),
                "size": [job.width, job.height, job.duration, job.fps],
                "sampling": [job.steps, job.guidance, job.enhance_prompt, job.audio],
                "run": [run.two_stage, run.batched, run.steps, run.frames.generated_frames],
                "settings": [
                    self.settings.max_sequence_length,
                    self.settings.step_cache_every,
                    self.settings.enhance_seed,
                    self.settings.enhance_max_new_tokens,
                    self.distilled_lora,
                ],
            },
        )

    def _resume_state(
        self, checkpoint: Checkpointing | None, key: str, groups: list[list[int]]
    ) -> StepState | None:
        """The caller's state if it belongs to this job; otherwise None and a log line saying why
        (the job then runs from step 0)."""
        if checkpoint is None or checkpoint.resume is None:
            return None
        state = checkpoint.resume
        reason = None
        if state.key != key:
            reason = "model, job shape or code version differs"
        elif list(state.seeds) not in groups:
            reason = "no pipeline group has its seeds"
        if reason is not None:
            log.warning("checkpoint refused, restarting from step 0", reason=reason, progress=state.progress)
            return None
        return state

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
        with self._text_encoder_on_device():
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

    def encode_many(self, pairs: Sequence[tuple[str, str]], cfg: bool) -> list[dict[str, Any]]:
        """``encode`` for several (prompt, negative) pairs at once (a together-batch): cache hits
        as they are, and every text the misses need (each distinct prompt and negative once) in
        one text-encoder call, as diffusers encodes a list of prompts.

        Each row equals its text encoded alone within float tolerance: the pipeline pads every
        text to ``max_sequence_length`` (left, with its own attention mask), so batching changes
        no row's input, only how the matrix products group (``tests/engine/test_together.py``).
        """
        msl = self.settings.max_sequence_length
        keys = [(p, n if cfg else None, cfg, msl) for p, n in pairs]
        found: dict[tuple[str, str | None, bool, int], dict[str, Any]] = {}
        missing: list[tuple[str, str | None, bool, int]] = []
        for key in dict.fromkeys(keys):  # distinct, in order
            hit = self.text_cache.get(key)
            if hit is None:
                missing.append(key)
            else:
                found[key] = hit
        if missing:
            texts = list(dict.fromkeys(t for k in missing for t in (k[0], k[1]) if t is not None))
            with self._text_encoder_on_device():
                embeds, masks, _, _ = self.t2v.encode_prompt(
                    prompt=texts,
                    do_classifier_free_guidance=False,
                    max_sequence_length=msl,
                    device=self.device,
                )
            # a cached row must not keep the whole batch alive: copy it out when it is kept
            keep = self.text_cache.size > 0
            rows = {
                t: (embeds[i : i + 1].clone() if keep else embeds[i : i + 1], masks[i : i + 1])
                for i, t in enumerate(texts)
            }
            for key in missing:
                (pos, pos_mask), neg = rows[key[0]], key[1]
                neg_embeds, neg_mask = rows[neg] if neg is not None else (None, None)
                value = {"pos": pos, "pos_mask": pos_mask, "neg": neg_embeds, "neg_mask": neg_mask}
                self.text_cache.put(key, value)
                found[key] = value
        return [found[k] for k in keys]

    def _encode(self, prompt: str, negative: str, cfg: bool) -> dict[str, Any]:
        with self._text_encoder_on_device():
            pos, pos_mask, neg, neg_mask = self.t2v.encode_prompt(
                prompt=prompt,
                negative_prompt=negative,
                do_classifier_free_guidance=cfg,
                max_sequence_length=self.settings.max_sequence_length,
                device=self.device,
            )
        return {"pos": pos, "pos_mask": pos_mask, "neg": neg, "neg_mask": neg_mask}

    @contextmanager
    def _text_encoder_on_device(self) -> Iterator[None]:
        """With text-encoder offload, Gemma visits the GPU only while it encodes or enhances."""
        if not self._offload_text_encoder:
            yield
            return
        self.t2v.text_encoder.to(self.device)
        try:
            yield
        finally:
            self.t2v.text_encoder.to("cpu")
            self._torch.cuda.empty_cache()

    def _condition_image(self, job: GenerationJob) -> Any:
        if job.image is None:
            return None
        from ltxserve.media.images import fit_cover

        return fit_cover(job.image, job.width, job.height)

    def _call(
        self,
        pipe: Any,
        job: GenerationJob,
        run: RunPlan,
        seeds: list[int],
        embeds: dict[str, Any],
        on_step: Any,
        cancel: threading.Event | None,
        ck: _GroupCheckpoints | None = None,
        sink: ResultSink | None = None,
        first_index: int = 0,
    ) -> tuple[np.ndarray, list[np.ndarray] | None, StageTimings]:
        """Denoise (one or two stages) to latents, then decode them (``engine.decode``): audio
        first (small), so a sink can start each file before the video frames arrive.

        With ``ck`` it checkpoints as it goes and, given a state of this group, continues it:
        finished stages are skipped, a stage in progress resumes at its saved step."""
        stage = StageTimings()
        generators = [self._torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        first = run.sampling
        size = (job.width, job.height)
        if run.two_stage:
            size = two_stage.stage_one_size(job.width, job.height)
        state = ck.resume if ck is not None else None
        if ck is not None and state is not None:
            resume.restore_generators(generators, state.generators)
            refine_steps = self.preset.refine_sampling().steps if run.two_stage else 0
            stage_steps = first.steps if state.stage == 1 else refine_steps
            before = first.steps if state.stage == 2 else 0
            on_step(before + (stage_steps if state.finished else state.step))  # never below the state
            log.info("resuming from checkpoint", stage=state.stage, step=state.step, progress=state.progress)

        # a. denoise: the only stage, or stage 1 at half size
        t0 = time.perf_counter()
        if state is not None and (state.stage > 1 or state.finished):
            video, audio = state.video, state.audio  # stage 1 done (or skipped: stage 2 in progress)
        else:
            with tracing.span(
                "denoise", stage="base", steps=first.steps, width=size[0], height=size[1], results=len(seeds)
            ):
                video, audio = self._denoise(
                    pipe,
                    job,
                    run,
                    first,
                    size,
                    generators,
                    embeds,
                    on_step,
                    cancel,
                    stage=1,
                    ck=ck,
                    state=state,
                )
            if ck is not None:
                ck.stage_done(1, first.steps, video, audio, generators)
        # b. two-stage: x2 latent upsampling, re-noise to the first refine sigma, refine at full size
        #    (dev: with the distilled LoRA on for this stage only)
        if run.two_stage and not (state is not None and state.stage == 2 and state.finished):
            refine = run.refine
            assert refine is not None
            assert refine.sigmas is not None
            in_refine = state if state is not None and state.stage == 2 else None
            extra: dict[str, Any] = {}
            if in_refine is None:
                with tracing.span("upsample"):
                    extra = {
                        "latents": two_stage.with_image_frame(  # I2V: the image re-encoded at full size
                            pipe, two_stage.upsample(self.upsampler, video), self._condition_image(job)
                        ),
                        "audio_latents": audio,
                        "noise_scale": refine.sigmas[0],
                    }
            with (
                tracing.span("denoise", stage="refine", steps=refine.steps, width=job.width),
                two_stage.refine_weights(pipe.transformer, self.distilled_lora),
            ):
                video, audio = self._denoise(
                    pipe,
                    job,
                    run,
                    refine,
                    (job.width, job.height),
                    generators,
                    embeds,
                    on_step,
                    cancel,
                    step_offset=first.steps,
                    stage=2,
                    ck=ck,
                    state=in_refine,
                    **extra,
                )
            if ck is not None:
                ck.stage_done(2, first.steps + refine.steps, video, audio, generators)
        stage.denoise = time.perf_counter() - t0
        if not self.decodes:  # a follower rank: rank 0 decodes (engine.parallel)
            return np.empty((len(seeds), 0, 0, 0, 3), np.uint8), None, stage

        # c. audio decode, fitted to the exact duration, then handed to the sink
        audio_np: list[np.ndarray] | None = None
        if job.audio:
            t0 = time.perf_counter()
            with tracing.span("audio_decode"):
                decoded = decode.decode_audio(pipe, audio)
            audio_np = [fit_audio(a, self.sample_rate, job.duration) for a in decoded]
            stage.audio_decode = time.perf_counter() - t0
        frame_sink: decode.FrameSink | None = None
        if sink is not None:
            for i, seed in enumerate(seeds):
                sink.start(
                    first_index + i, seed, audio_np[i] if audio_np else None, self.sample_rate, job.fps
                )

            def frame_sink(_first: int, chunk: np.ndarray) -> None:
                for i in range(chunk.shape[0]):
                    sink.frames(first_index + i, chunk[i])

        # d. video decode: the whole clip at once, or time chunks, converted to uint8 frames in
        #    groups that go to the sink as soon as they exist
        t0 = time.perf_counter()
        vae_seconds: list[float] = []
        with tracing.span("video_decode", chunked=run.tiled_decode, streamed=sink is not None):
            frames_u8 = decode.decode_video(
                pipe,
                video,
                chunked=run.tiled_decode,
                chunk_frames=run.chunk_frames,
                context_frames=self.settings.decode_context_frames,
                spatial_tiles=run.tiled_decode,
                keep_frames=run.frames.requested_frames,
                sink=frame_sink,
                vae_seconds=vae_seconds,
            )
        stage.video_decode = time.perf_counter() - t0
        stage.vae_decode = sum(vae_seconds)
        return frames_u8, audio_np, stage

    def _denoise(
        self,
        pipe: Any,
        job: GenerationJob,
        run: RunPlan,
        sampling: Sampling,
        size: tuple[int, int],
        generators: list[Any],
        embeds: dict[str, Any],
        on_step: Any,
        cancel: threading.Event | None,
        step_offset: int = 0,
        stage: int = 1,
        ck: _GroupCheckpoints | None = None,
        state: StepState | None = None,
        **extra: Any,
    ) -> tuple[Any, Any]:
        """One pipeline call to (un-normalized) video and audio latents; with ``state``, the rest
        of a stage from its checkpoint (``engine.resume``)."""
        n = len(generators)
        start = state.step if state is not None else 0
        cached = accel.cached_steps(sampling.steps, self.settings.step_cache_every)

        def callback(p: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            done = start + step + 1  # steps done in this stage
            on_step(step_offset + done)
            if cancel is not None and cancel.is_set():
                p._interrupt = True  # the pipeline's own flag; raising stops before any decode
                raise GenerationCancelled()
            # mid-stage checkpoint (a finished stage is saved by the caller); with the step cache,
            # only where the next step computes afresh, so the resumed run needs no cached output
            if ck is not None and done < sampling.steps and done not in cached:
                ck.step_done(p, stage, done, step_offset + done, kwargs, generators, state)
            return {}

        kwargs: dict[str, Any] = {
            "prompt_embeds": _per_result(embeds["pos"], n),
            "prompt_attention_mask": _per_result(embeds["pos_mask"], n),
            "width": size[0],
            "height": size[1],
            "num_frames": run.frames.generated_frames,
            "frame_rate": float(job.fps),
            "num_inference_steps": sampling.steps,
            "generator": generators,
            "output_type": "latent",
            "return_dict": False,
            "callback_on_step_end": callback,
            "max_sequence_length": self.settings.max_sequence_length,
            **sampling.kwargs,
            **extra,
        }
        if sampling.sigmas is not None:
            kwargs["sigmas"] = list(sampling.sigmas)
        if sampling.cfg:
            kwargs["negative_prompt_embeds"] = _per_result(embeds["neg"], n)
            kwargs["negative_prompt_attention_mask"] = _per_result(embeds["neg_mask"], n)
        if job.image is not None:
            kwargs["image"] = self._condition_image(job)
        with ExitStack() as stack:
            stack.enter_context(_fixed_schedule(pipe, sampling))
            if ck is not None:
                names = stack.enter_context(resume.audio_in_callback(pipe))
                kwargs["callback_on_step_end_tensor_inputs"] = names
            if state is not None:
                kwargs.update(stack.enter_context(resume.resumed_call(pipe, state)))
            stack.enter_context(
                # the cache assumes one transformer call per step: off with STG/modality passes
                accel.step_cache(
                    pipe.transformer,
                    sampling.steps,
                    0 if sampling.extra_passes else self.settings.step_cache_every,
                    start,
                )
            )
            video, audio = pipe(**kwargs)
        return video, audio


@dataclass
class _GroupCheckpoints:
    """Checkpointing of one pipeline group: builds ``StepState``s and hands them over when due."""

    ck: Checkpointing
    key: str
    seeds: tuple[int, ...]
    done_before: int  # steps of earlier groups, for the job-wide progress
    resume: StepState | None

    def step_done(
        self,
        pipe: Any,
        stage: int,
        done: int,
        group_progress: int,
        tensors: dict[str, Any],
        generators: list[Any],
        resumed: StepState | None,
    ) -> None:
        progress = self.done_before + group_progress
        if not self.ck.due(progress):
            return
        # a resumed call's scheduler holds the tail of the schedule: keep the full one
        sigmas = resumed.sigmas if resumed is not None else resume.cpu_copy(pipe.scheduler.sigmas)
        timesteps = resumed.timesteps if resumed is not None else resume.cpu_copy(pipe.scheduler.timesteps)
        self.ck.hand_over(
            StepState(
                key=self.key,
                seeds=self.seeds,
                stage=stage,
                step=done,
                finished=False,
                progress=progress,
                video=resume.cpu_copy(tensors["latents"]),
                audio=resume.cpu_copy(tensors["audio_latents"]),
                sigmas=sigmas,
                timesteps=timesteps,
                generators=resume.generator_states(generators),
            )
        )

    def stage_done(
        self, stage: int, group_progress: int, video: Any, audio: Any, generators: list[Any]
    ) -> None:
        progress = self.done_before + group_progress
        if not self.ck.due(progress):
            return
        empty = video.new_zeros(0).cpu()
        self.ck.hand_over(
            StepState(
                key=self.key,
                seeds=self.seeds,
                stage=stage,
                step=0,
                finished=True,
                progress=progress,
                video=resume.cpu_copy(video),
                audio=resume.cpu_copy(audio),
                sigmas=empty,
                timesteps=empty,
                generators=resume.generator_states(generators),
            )
        )


@contextmanager
def _fixed_schedule(pipe: Any, sampling: Sampling) -> Iterator[None]:
    """Run a fixed schedule (distilled, refine) as given: a scheduler without the
    resolution-dependent shift, as Lightricks' pipelines and diffusers' LTX-2 docs do."""
    if sampling.sigmas is None:
        yield
        return
    original = pipe.scheduler
    pipe.scheduler = type(original).from_config(
        original.config, use_dynamic_shifting=False, shift=1.0, shift_terminal=None
    )
    try:
        yield
    finally:
        pipe.scheduler = original


def _per_result(tensor: Any, n: int) -> Any:
    """Text-encoder outputs for ``n`` results: one prompt's repeated, or one row per result
    already (prompts of several requests batched together, ``engine.together``)."""
    return tensor if tensor.shape[0] == n else tensor.repeat(n, *[1] * (tensor.dim() - 1))


def _halvings(n: int) -> list[int]:
    """``n, n/2, ..., 1``: decode chunk sizes tried from the largest down."""
    out = [max(1, n)]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out
