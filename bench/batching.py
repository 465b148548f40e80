"""Batching across requests: N jobs of one shape (different prompts and seeds) run together vs
one at a time, and vs diffusers batched as well as it can (one call, a list of prompts, one
generator per result).

    python bench/batching.py [--preset mid] [--sizes 2,4] [--pairs 5] [--threads 0]

Interleaved pairs (``bench/method.py``). Printed per batch size: ltxserve one-at-a-time (A) vs
ltxserve batched (B), and diffusers batched (A) vs ltxserve batched (B), each with min/median/max
and the per-pair ratio's spread and verdict; and what the batch saves outside the transformer
(text encoding, VAE decode, audio decode per result). On a CPU the transformer's FLOPs grow with
the batch, so the gain is in what is shared or better vectorized; on a GPU batching fills the
device. The model is a random-weight LTX-2 (it outputs noise).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import method
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, plan_frames
from ltxserve.engine.tiny import save_tiny_model
from ltxserve.engine.together import generate_together
from ltxserve.testing import diffusers_recipe

PROMPTS = ["a lighthouse at dusk", "a fox in the snow", "rain on a window", "a busy market", "waves at night"]
SHAPE = GenerationJob(prompt="", width=256, height=192, duration=1, fps=24, steps=8, guidance=4.0, seeds=(0,))


def diffusers_batched(engine: Engine, jobs: list[GenerationJob]) -> None:
    job = jobs[0]
    plan = plan_frames(job.duration, job.fps)
    with diffusers_recipe(engine, job) as kwargs:
        kwargs["negative_prompt"] = [kwargs["negative_prompt"] for _ in jobs]  # one per prompt
        engine.t2v(
            prompt=[j.prompt for j in jobs],
            height=job.height,
            width=job.width,
            num_frames=plan.generated_frames,
            frame_rate=float(job.fps),
            num_inference_steps=job.steps,
            generator=[torch.Generator().manual_seed(j.seeds[0]) for j in jobs],
            output_type="np",
            max_sequence_length=engine.settings.max_sequence_length,
            **kwargs,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mid")
    parser.add_argument("--sizes", default="2,4")
    parser.add_argument("--pairs", type=int, default=method.DEFAULT_PAIRS)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    args = parser.parse_args()
    threads = method.pin_threads(args.threads or None)
    method.header(threads, f"torch {torch.__version__}, device cpu")
    model = args.cache / f"model-{args.preset}"
    if not model.exists():
        save_tiny_model(model, args.preset)
    engine = Engine.load(
        Settings(data_dir=Path(tempfile.mkdtemp()), model_path=str(model), text_cache_size=0)
    )
    s = SHAPE
    print(
        f"[{args.preset}] {s.width}x{s.height}, {s.duration} s at {s.fps} fps, {s.steps} steps, "
        f"CFG {s.guidance}; "
        "each job its own prompt and seed; text cache off (every prompt encoded); "
        "ltxserve batched encodes each distinct text once (the prompts and the one shared default "
        "negative) in one text-encoder call, diffusers the prompts and their negatives in two"
    )
    data: dict[str, dict[str, list[float]]] = {}
    for n in (int(v) for v in args.sizes.split(",")):
        jobs = [replace(SHAPE, prompt=PROMPTS[i % len(PROMPTS)], seeds=(100 + i,)) for i in range(n)]
        outside: dict[str, list[float]] = {"alone": [], "batched": []}

        def alone(jobs: list[GenerationJob] = jobs, outside: dict[str, list[float]] = outside) -> float:
            t0 = time.perf_counter()
            results = [engine.generate(j)[0] for j in jobs]
            elapsed = time.perf_counter() - t0
            t = [r.timings for r in results]
            outside["alone"].append(
                sum(x.text_encode + x.video_decode + x.audio_decode for x in t) / len(jobs)
            )
            return elapsed

        def batched(jobs: list[GenerationJob] = jobs, outside: dict[str, list[float]] = outside) -> float:
            t0 = time.perf_counter()
            results = generate_together(engine, jobs)
            elapsed = time.perf_counter() - t0
            t = results[0][0].timings
            outside["batched"].append((t.text_encode + t.video_decode + t.audio_decode) / len(jobs))
            return elapsed

        def reference(jobs: list[GenerationJob] = jobs) -> float:
            t0 = time.perf_counter()
            diffusers_batched(engine, jobs)
            return time.perf_counter() - t0

        print(f"\n[{n} jobs]")
        one = method.compare(("ltxserve one at a time", alone), ("ltxserve batched", batched), args.pairs)
        print(one.report())
        ref = method.compare(("diffusers batched", reference), ("ltxserve batched", batched), args.pairs)
        print(ref.report())
        a, b = method.Side("alone", outside["alone"]), method.Side("batched", outside["batched"])
        print(f"  outside the transformer per result: alone {a.spread()}, batched {b.spread()}")
        # results/min from the medians of one comparison at a time (each pair ran at the same load)
        print(
            f"  results/min (median): one at a time {60 * n / one.a.median:.1f} vs batched "
            f"{60 * n / one.b.median:.1f}; diffusers batched {60 * n / ref.a.median:.1f} vs batched "
            f"{60 * n / ref.b.median:.1f}"
        )
        data[str(n)] = {
            "alone": one.a.samples,
            "batched": one.b.samples,
            "diffusers": ref.a.samples,
            "batched_ref": ref.b.samples,
        }
    method.record("batching", {"preset": args.preset, "seconds": data})


if __name__ == "__main__":
    main()
