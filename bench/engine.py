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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, plan_frames, sampler_kwargs
from ltxserve.engine.tiny import save_tiny_model
from ltxserve.media.encode import encode_video


@dataclass(frozen=True)
class Case:
    preset: str
    job: GenerationJob


CASES = {
    # The test-size model at a typical small request.
    "tiny": GenerationJob(
        prompt="a lighthouse at dusk",
        width=512,
        height=320,
        duration=2,
        fps=24,
        steps=8,
        guidance=4.0,
        seeds=(7,),
    ),
    # A mid-size random-weight LTX-2 that takes ~10-30 s per job on a 2-core CPU.
    "mid": GenerationJob(
        prompt="a lighthouse at dusk",
        width=512,
        height=320,
        duration=2,
        fps=24,
        steps=8,
        guidance=4.0,
        seeds=(7,),
    ),
}


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
    job = CASES[preset]
    # Warm-up both paths (first-call allocations, oneDNN kernel selection).
    engine.generate(job)
    plain_diffusers(engine, job)

    ours: list[float] = []
    ref: list[float] = []
    stages: list[dict[str, float]] = []
    identical = True
    for _ in range(repeats):
        t0 = time.perf_counter()
        (result,) = engine.generate(job)
        ours.append(time.perf_counter() - t0)
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

    m_ours, m_ref = statistics.median(ours), statistics.median(ref)
    j = job
    print(
        f"\n[{preset}] {j.width}x{j.height}, {j.duration} s at {j.fps} fps, {j.steps} steps, "
        f"CFG {j.guidance}, {repeats} runs (median)"
    )
    print(f"  plain diffusers     {m_ref:8.3f} s")
    print(f"  ltxserve engine     {m_ours:8.3f} s   ratio {m_ours / m_ref:.3f} (target <= 1.02)")
    print(f"  identical frames    {identical}")
    print("  ltxserve stages (median s):")
    for name in stages[0]:
        print(f"    {name:<14} {statistics.median(s[name] for s in stages):8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="tiny,mid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for preset in args.presets.split(","):
        run_preset(preset, args.repeats, args.cache)


if __name__ == "__main__":
    main()
