"""Engine overhead: ltxserve's Engine vs a plain diffusers LTX2Pipeline call, same process.

    python bench/engine.py [--presets tiny,mid] [--repeats 3]

Both sides run the same random-weight LTX-2 (built locally from the diffusers classes; it
outputs noise), the same settings and seed, alternating A/B so drift hits both. Printed:
median seconds, the ratio ltxserve/diffusers (target <= 1.02: the engine adds nothing
measurable), whether the frames are identical, and ltxserve's split per stage (text encoding,
denoising, video decode, audio decode, file encoding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, plan_frames, sampler_kwargs
from ltxserve.engine.tiny import save_tiny_model
from ltxserve.media.encode import encode_video

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
    t0 = time.perf_counter()
    out = pipe(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        height=job.height,
        width=job.width,
        num_frames=plan.generated_frames,
        frame_rate=float(job.fps),
        num_inference_steps=job.steps,
        generator=torch.Generator().manual_seed(job.seeds[0]),
        output_type="np",
        max_sequence_length=engine.settings.max_sequence_length,
        **sampler_kwargs(job.guidance),
    )
    elapsed = time.perf_counter() - t0
    frames = (np.clip(np.asarray(out.frames), 0, 1) * 255 + 0.5).astype(np.uint8)[0, : plan.requested_frames]
    return elapsed, frames


def run_preset(preset: str, repeats: int, root: Path) -> None:
    model_dir = root / f"model-{preset}"
    if not model_dir.exists():
        save_tiny_model(model_dir, preset)
    settings = Settings(data_dir=root / "data", model_path=str(model_dir))
    engine = Engine.load(settings)
    job = JOB
    # Warm-up both paths (first-call allocations, oneDNN kernel selection).
    engine.generate(job)
    plain_diffusers(engine, job)

    ours: list[float] = []  # cold: caches emptied, every stage computed (the engine's overhead)
    warm: list[float] = []  # the same prompt again: the text-encoder cache hits (ltxserve default)
    ref: list[float] = []
    stages: list[dict[str, float]] = []
    identical = True
    for _ in range(repeats):
        engine.text_cache.clear()
        engine.enhance_cache.clear()
        t0 = time.perf_counter()
        (result,) = engine.generate(job)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        (again,) = engine.generate(job)
        warm.append(time.perf_counter() - t0)
        identical &= bool(np.array_equal(again.frames, result.frames))
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
        seconds, frames = plain_diffusers(engine, job)
        ref.append(seconds)
        identical &= bool(np.array_equal(frames, result.frames))

    m_ours, m_ref, m_warm = statistics.median(ours), statistics.median(ref), statistics.median(warm)
    j = job
    print(
        f"\n[{preset}] {j.width}x{j.height}, {j.duration} s at {j.fps} fps, {j.steps} steps, "
        f"CFG {j.guidance}, {repeats} runs (median)"
    )
    print(f"  plain diffusers     {m_ref:8.3f} s")
    print(f"  ltxserve, cold      {m_ours:8.3f} s   ratio {m_ours / m_ref:.3f} (overhead; target <= 1.02)")
    print(
        f"  ltxserve, warm      {m_warm:8.3f} s   ratio {m_warm / m_ref:.3f} (repeated prompt; target <= 1.0)"
    )
    print(f"  identical frames    {identical}")
    print("  ltxserve stages (median s):")
    for name in stages[0]:
        print(f"    {name:<14} {statistics.median(s[name] for s in stages):8.3f}")


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


def run_stream(root: Path) -> None:
    """8 jobs, two prompts repeated, numberResults=4: ltxserve vs plain diffusers per result."""
    engine = mid_engine(root)
    prompts = ["a lighthouse at dusk", "a fox in the snow"]
    base = GenerationJob(
        prompt="", width=256, height=192, duration=1, fps=24, steps=8, guidance=4.0, seeds=(0,)
    )
    jobs = [replace(base, prompt=prompts[i % 2], seeds=tuple(range(10 * i, 10 * i + 4))) for i in range(8)]
    engine.generate(replace(jobs[0], seeds=(999,)))  # warm-up both paths
    plain_diffusers(engine, replace(jobs[0], seeds=(999,)))
    engine.text_cache.clear()

    t0 = time.perf_counter()
    ours = [r for job in jobs for r in engine.generate(job)]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [plain_diffusers(engine, replace(job, seeds=(s,)))[1] for job in jobs for s in job.seeds]
    t_ref = time.perf_counter() - t0
    worst = min(psnr(a.frames, b) for a, b in zip(ours, ref, strict=True))
    n = len(ours)
    print(
        f"\n[stream, mid] 8 jobs x numberResults=4 (2 prompts repeated), {base.width}x{base.height}, "
        f"{base.duration} s at {base.fps} fps, {base.steps} steps, CFG {base.guidance}"
    )
    print(f"  plain diffusers, one call per result  {t_ref:8.2f} s  ({n / t_ref * 60:6.1f} results/min)")
    print(f"  ltxserve engine (batched + caches)    {t_ours:8.2f} s  ({n / t_ours * 60:6.1f} results/min)")
    print(
        f"  throughput ratio {t_ref / t_ours:.2f}x (target >= 1.3x); text encodes: "
        f"{engine.text_cache.stats.misses} for {len(jobs)} jobs; worst PSNR vs per-result {worst:.1f} dB "
        "(batching is exact to <= 1e-5 in float: tests/engine/test_exactness.py)"
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--skip", default="", help="comma list of: overhead,stream,quality")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    if "overhead" not in args.skip:
        for preset in args.presets.split(","):
            run_preset(preset, args.repeats, args.cache)
    if "stream" not in args.skip:
        run_stream(args.cache)
    if "quality" not in args.skip:
        run_quality(args.cache)


if __name__ == "__main__":
    main()
