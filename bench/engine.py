"""Engine overhead: ltxserve's Engine vs a plain diffusers LTX2Pipeline call, same process.

    python bench/engine.py [--presets tiny,mid] [--pairs 5] [--threads 0]

Both sides run the same random-weight LTX-2 (built locally from the diffusers classes; it
outputs noise), the same settings and seed, interleaved A/B pairs (``bench/method.py``). Printed:
each side's min/median/max, the per-pair ratio ltxserve/diffusers with its spread and verdict
(the engine should add nothing measurable), whether the frames are identical, the warm-cache
saving next to the text-encode stage it skips, and ltxserve's split per stage. The stream
reference is diffusers batched as well as it can be: one call per job with
``num_videos_per_prompt`` and one generator per result (the prompt encoded once per job).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import method
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, plan_frames
from ltxserve.engine.tiny import save_tiny_model
from ltxserve.media.encode import encode_video
from ltxserve.testing import diffusers_recipe

#: One request for every preset: the tiny model at a typical small request, and the mid-size
#: random-weight LTX-2 that takes ~10-30 s for it on a 2-core CPU.
JOB = GenerationJob(
    prompt="a lighthouse at dusk",
    width=512,
    height=320,
    duration=2,
    fps=24,
    steps=8,
    guidance=4.0,
    seeds=(7,),
)


def plain_diffusers(engine: Engine, job: GenerationJob) -> tuple[float, np.ndarray]:
    """What a user of diffusers would write: one pipeline call with the same settings."""
    pipe = engine.t2v
    plan = plan_frames(job.duration, job.fps)
    with diffusers_recipe(engine, job) as kwargs:
        t0 = time.perf_counter()
        out = pipe(
            prompt=job.prompt,
            height=job.height,
            width=job.width,
            num_frames=plan.generated_frames,
            frame_rate=float(job.fps),
            num_inference_steps=job.steps,
            generator=torch.Generator().manual_seed(job.seeds[0]),
            output_type="np",
            max_sequence_length=engine.settings.max_sequence_length,
            **kwargs,
        )
        elapsed = time.perf_counter() - t0
    frames = (np.clip(np.asarray(out.frames), 0, 1) * 255 + 0.5).astype(np.uint8)[0, : plan.requested_frames]
    return elapsed, frames


def run_preset(preset: str, pairs: int, root: Path) -> None:
    model_dir = root / f"model-{preset}"
    if not model_dir.exists():
        save_tiny_model(model_dir, preset)
    settings = Settings(data_dir=root / "data", model_path=str(model_dir))
    engine = Engine.load(settings)
    job = JOB
    results: list[Any] = []

    def ours_cold() -> float:
        engine.text_cache.clear()
        engine.enhance_cache.clear()
        t0 = time.perf_counter()
        results.extend(engine.generate(job))
        return time.perf_counter() - t0

    def ours_warm() -> float:  # the same prompt again: the text-encoder cache hits
        t0 = time.perf_counter()
        engine.generate(job)
        return time.perf_counter() - t0

    reference: list[np.ndarray] = []

    def diffusers() -> float:
        seconds, frames = plain_diffusers(engine, job)
        reference.append(frames)
        return seconds

    j = job
    print(
        f"\n[{preset}] {j.width}x{j.height}, {j.duration} s at {j.fps} fps, {j.steps} steps, CFG {j.guidance}"
    )
    cold = method.compare(("plain diffusers", diffusers), ("ltxserve, cold caches", ours_cold), pairs)
    print(cold.report())
    identical = all(np.array_equal(r.frames, reference[0]) for r in results) and all(
        np.array_equal(f, reference[0]) for f in reference
    )
    print(f"  identical frames: {identical}")
    warm = method.compare(
        ("ltxserve, cold caches", ours_cold), ("ltxserve, same prompt again", ours_warm), pairs
    )
    print(warm.report())
    stages: list[dict[str, float]] = []
    for result in results[-pairs:]:
        t = result.timings
        with tempfile.TemporaryDirectory() as tmp:
            enc = encode_video(Path(tmp) / "o.mp4", result.frames, job.fps, result.audio, result.sample_rate)
        stages.append(
            {
                "text encode": t.text_encode,
                "denoise": t.denoise,
                "video decode": t.video_decode,
                "audio decode": t.audio_decode,
                "file encode": enc.seconds,
            }
        )
    saved = warm.a.median - warm.b.median
    print(f"  warm saves {saved:.3f} s (median) of a text-encode stage of (stages, median [min .. max]):")
    for name in stages[0]:
        side = method.Side(name, [s[name] for s in stages])
        print(f"    {name:<14} {side.spread()}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def snr(ref: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - other.astype(np.float64)) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def mid_engine(root: Path, **overrides: object) -> Engine:
    model_dir = root / "model-mid"
    if not model_dir.exists():
        save_tiny_model(model_dir, "mid")
    settings = Settings(data_dir=root / "data", model_path=str(model_dir))
    return Engine.load(settings.model_copy(update=overrides))


def diffusers_batched(engine: Engine, job: GenerationJob) -> list[np.ndarray]:
    """diffusers at its best for one job: one call, the prompt encoded once, one generator per result."""
    pipe = engine.t2v
    plan = plan_frames(job.duration, job.fps)
    with diffusers_recipe(engine, job) as kwargs:
        out = pipe(
            prompt=job.prompt,
            height=job.height,
            width=job.width,
            num_frames=plan.generated_frames,
            frame_rate=float(job.fps),
            num_inference_steps=job.steps,
            num_videos_per_prompt=len(job.seeds),
            generator=[torch.Generator().manual_seed(s) for s in job.seeds],
            output_type="np",
            max_sequence_length=engine.settings.max_sequence_length,
            **kwargs,
        )
    frames = (np.clip(np.asarray(out.frames), 0, 1) * 255 + 0.5).astype(np.uint8)
    return [f[: plan.requested_frames] for f in frames]


def run_stream(root: Path, pairs: int, jobs_n: int, results_n: int) -> None:
    """Jobs with numberResults > 1, two prompts repeated: ltxserve vs diffusers batched per job."""
    engine = mid_engine(root)
    prompts = ["a lighthouse at dusk", "a fox in the snow"]
    base = GenerationJob(
        prompt="", width=256, height=192, duration=1, fps=24, steps=8, guidance=4.0, seeds=(0,)
    )
    jobs = [
        replace(base, prompt=prompts[i % 2], seeds=tuple(range(10 * i, 10 * i + results_n)))
        for i in range(jobs_n)
    ]
    ours: list[Any] = []
    ref: list[np.ndarray] = []

    def run_ours() -> float:
        engine.text_cache.clear()
        ours.clear()
        t0 = time.perf_counter()
        ours.extend(r for job in jobs for r in engine.generate(job))
        return time.perf_counter() - t0

    def run_ref() -> float:
        ref.clear()
        t0 = time.perf_counter()
        ref.extend(f for job in jobs for f in diffusers_batched(engine, job))
        return time.perf_counter() - t0

    n = jobs_n * results_n
    print(
        f"\n[stream, mid] {jobs_n} jobs x numberResults={results_n} (2 prompts repeated), "
        f"{base.width}x{base.height}, {base.duration} s at {base.fps} fps, {base.steps} steps, "
        f"CFG {base.guidance}"
    )
    cmp = method.compare(
        ("diffusers batched (num_videos_per_prompt)", run_ref), ("ltxserve engine", run_ours), pairs
    )
    print(cmp.report())
    worst = min(psnr(a.frames, b) for a, b in zip(ours, ref, strict=True))
    print(
        f"  results/min: diffusers {n / cmp.a.median * 60:.1f}, ltxserve {n / cmp.b.median * 60:.1f}; "
        f"worst PSNR ours vs diffusers {worst:.1f} dB (batching is exact to <= 1e-5 in float: "
        "tests/engine/test_exactness.py)"
    )


def run_quality(root: Path) -> None:
    """Lossy options against the exact path, same seed: PSNR of frames, SNR of audio."""
    job = JOB
    (exact,) = mid_engine(root).generate(job)
    print(f"\n[quality, mid] lossy options vs the exact path ({job.width}x{job.height}, seed {job.seeds[0]})")
    for name, value in (("fp8_weights", True), ("step_cache_every", 2)):
        eng = mid_engine(root, **{name: value})
        t0 = time.perf_counter()
        (r,) = eng.generate(job)
        seconds = time.perf_counter() - t0
        assert exact.audio is not None
        assert r.audio is not None
        print(
            f"  {name:<20} PSNR {psnr(exact.frames, r.frames):6.1f} dB   audio SNR "
            f"{snr(exact.audio, r.audio):6.1f} dB   {seconds:6.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="tiny,mid")
    parser.add_argument("--pairs", type=int, default=method.DEFAULT_PAIRS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    parser.add_argument("--stream-jobs", type=int, default=4)
    parser.add_argument("--stream-results", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--skip", default="", help="comma list of: overhead,stream,quality")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    threads = method.pin_threads(args.threads or None)
    method.header(threads, f"torch {torch.__version__}, device cpu")
    if "overhead" not in args.skip:
        for preset in args.presets.split(","):
            run_preset(preset, args.pairs, args.cache)
    if "stream" not in args.skip:
        run_stream(args.cache, args.pairs, args.stream_jobs, args.stream_results)
    if "quality" not in args.skip:
        run_quality(args.cache)


if __name__ == "__main__":
    main()
