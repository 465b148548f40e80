"""Requests batched together: several jobs of the same shape denoise in one pipeline call.

Jobs batch when everything that shapes the latents and the schedule matches (``batch_key``: size,
length, frame rate, steps, guidance, audio on/off); prompts, negative prompts and seeds may
differ. Each result keeps its own generator (its seed) and its own row of text-encoder outputs
(its prompt), so it equals the same job run alone within float tolerance: batched matrix products
may sum in another order (``tests/engine/test_together.py`` bounds the difference, and catches a
prompt given to the wrong job). Everything runs once for the batch, as in one diffusers call with a
list of prompts: one text-encoder call for the prompts and negatives not cached
(``Engine.encode_many``), then one pipeline call (latents, connectors, denoise) and one audio and
one video decode. Image-to-video and prompt enhancement are left out (a per-request condition
image and enhancer pass); such jobs run alone. A batch that would not fit the memory budget runs
job by job instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ltxserve import tracing
from ltxserve.engine.types import GenerationJob, GenerationResult, ProgressCallback, ResultSink, StageTimings

if TYPE_CHECKING:
    from ltxserve.engine.engine import Engine


@dataclass(frozen=True)
class BatchKey:
    """What jobs must share to denoise in one call."""

    width: int
    height: int
    duration: int
    fps: int
    steps: int
    guidance: float
    audio: bool


def batch_key(job: GenerationJob) -> BatchKey | None:
    """The job's batch key, or None when it must run alone."""
    if job.image is not None or job.enhance_prompt:
        return None
    return BatchKey(job.width, job.height, job.duration, job.fps, job.steps, job.guidance, job.audio)


def generate_together(
    engine: Engine,
    jobs: list[GenerationJob],
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    sink: ResultSink | None = None,
) -> list[list[GenerationResult]]:
    """Run ``jobs`` (one ``batch_key``) as one batch; results per job, in ``job.seeds`` order.

    ``sink`` indices count across the jobs (job 0's results first). The capacity check sees the
    whole batch; when it does not allow one call, the jobs run one after another.
    """
    keys = {batch_key(j) for j in jobs}
    if not jobs or None in keys or len(keys) != 1:
        raise ValueError("generate_together needs jobs with one batch key")
    combined = replace(jobs[0], seeds=tuple(s for j in jobs for s in j.seeds))
    run = engine.plan(combined)
    if len(jobs) == 1 or not run.batched:
        return _one_by_one(engine, jobs, progress, cancel, sink)
    import torch

    from ltxserve.engine.engine import negative_prompt  # Lightricks' default under CFG

    with engine._lock:
        timings = StageTimings()
        # 1. text encoding: the prompts and negatives not cached, in one text-encoder call; then
        #    one row per result
        t0 = time.perf_counter()
        with tracing.span("text_encode", jobs=len(jobs)):
            encoded = engine.encode_many([(j.prompt, negative_prompt(j, run.cfg)) for j in jobs], run.cfg)
        rows: dict[str, list[Any]] = {}
        for job, embeds in zip(jobs, encoded, strict=True):
            for name, value in embeds.items():
                if value is not None:
                    reps = [len(job.seeds)] + [1] * (value.dim() - 1)
                    rows.setdefault(name, []).append(value.repeat(*reps))
        batched: dict[str, Any] = {name: torch.cat(parts) for name, parts in rows.items()}
        batched.setdefault("neg", None)
        batched.setdefault("neg_mask", None)
        timings.text_encode = time.perf_counter() - t0

        # 2. one denoise + decode for every result
        def on_step(step: int) -> None:
            if progress is not None:
                progress(step, run.steps)

        frames, audio, stage = engine._call(
            engine.t2v, combined, run, list(combined.seeds), batched, on_step, cancel, None, sink, 0
        )
        timings.denoise, timings.video_decode = stage.denoise, stage.video_decode
        timings.vae_decode, timings.audio_decode = stage.vae_decode, stage.audio_decode

    # 3. results back to their jobs
    out: list[list[GenerationResult]] = []
    at = 0
    for job in jobs:
        out.append(
            [
                GenerationResult(
                    seed=seed,
                    frames=frames[at + i, : run.frames.requested_frames],
                    fps=job.fps,
                    audio=audio[at + i] if audio is not None else None,
                    sample_rate=engine.sample_rate,
                    prompt=job.prompt,
                    timings=timings,
                )
                for i, seed in enumerate(job.seeds)
            ]
        )
        at += len(job.seeds)
    return out


def _one_by_one(
    engine: Engine,
    jobs: list[GenerationJob],
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    sink: ResultSink | None,
) -> list[list[GenerationResult]]:
    out: list[list[GenerationResult]] = []
    offset = 0
    for job in jobs:
        shifted = _Shifted(sink, offset) if sink is not None else None
        out.append(engine.generate(job, progress, cancel, sink=shifted))
        offset += len(job.seeds)
    return out


class _Shifted:
    """A sink seen through an index offset (jobs run one by one keep batch-wide indices)."""

    def __init__(self, sink: ResultSink, offset: int) -> None:
        self.sink, self.offset = sink, offset

    def start(self, index: int, seed: int, audio: Any, sample_rate: int, fps: int) -> None:
        self.sink.start(index + self.offset, seed, audio, sample_rate, fps)

    def frames(self, index: int, chunk: Any) -> None:
        self.sink.frames(index + self.offset, chunk)
