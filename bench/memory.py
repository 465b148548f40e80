"""Peak memory of long clips: whole vs chunked decode, measured (RSS sampling) against the estimate.

    python bench/memory.py [--preset tiny|mid] [--duration 20] [--fps 24] [--size 256x128]

Runs the engine on a random-weight LTX-2 (it outputs noise) on CPU, once per decode mode, in a
fresh process each so one run's allocations do not hide the next one's. Printed per mode: peak RSS
above the loaded model (sampled every 5 ms), the capacity module's estimate for the same plan and
the ratio measured/estimate (the estimate must stay above: ratio < 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import method

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_one(model: str, mode: str, duration: int, fps: int, width: int, height: int) -> dict[str, float]:
    from ltxserve.config import Settings
    from ltxserve.engine import Engine, GenerationJob
    from ltxserve.testing import PeakRSS

    settings = Settings(
        model_path=model, vae_tiling=mode, max_sequence_length=64, data_dir=Path(tempfile.mkdtemp())
    )
    engine = Engine.load(settings)
    job = GenerationJob(
        prompt="a long drive at night",
        width=width,
        height=height,
        duration=duration,
        fps=fps,
        steps=1,
        guidance=1.0,
        seeds=(1,),
    )
    engine.generate(
        GenerationJob(prompt="warm", width=128, height=64, duration=1, fps=8, steps=1, guidance=1, seeds=(0,))
    )
    plan = engine.plan(job)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        (result,) = engine.generate(job)
        seconds = time.perf_counter() - t0
    return {
        "measured_mb": rss.delta / 2**20,
        "estimate_mb": plan.estimate.peak(plan.tiled_decode) / 2**20,
        "result_mb": result.frames.nbytes / 2**20,
        "seconds": seconds,
        "decode_s": result.timings.video_decode,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--size", default="256x128")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if not args.child:
        method.header(None, "each mode in a fresh process, torch threads = every core (no A/B ratio: sizes)")
    if args.child:
        print(json.dumps(run_one(*args.child, args.duration, args.fps, width, height)))
        return
    from ltxserve.engine.tiny import save_tiny_model

    model = Path(tempfile.mkdtemp()) / f"{args.preset}-ltx2"
    save_tiny_model(model, args.preset)
    print(f"{args.preset} model, {args.duration} s at {args.fps} fps, {width}x{height}, 1 step")
    for mode in ("off", "on"):
        cmd = [sys.executable, __file__, "--child", str(model), mode, "--duration", str(args.duration)]
        cmd += ["--fps", str(args.fps), "--size", args.size]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        label = "whole decode  " if mode == "off" else "chunked decode"
        print(
            f"{label}: peak {r['measured_mb']:7.0f} MB over the loaded model "
            f"(estimate {r['estimate_mb']:7.0f} MB, "
            f"ratio {r['measured_mb'] / r['estimate_mb']:.2f}); frames {r['result_mb']:.0f} MB; "
            f"job {r['seconds']:.1f} s, decode {r['decode_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
