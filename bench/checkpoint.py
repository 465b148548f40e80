"""What step checkpoints cost a job: interleaved runs without (A) and with (B) checkpointing.

    python bench/checkpoint.py [--preset mid] [--pairs 3] [--every-steps 10] [--steps 20]

B checkpoints every ``--every-steps`` steps (the default setting) and, like the worker, hands each
state to a background thread that serializes it (``StepState.to_bytes``) and writes it to disk.
Printed: A and B wall time (median [min .. max]) with the B/A ratio and its verdict, the time the
denoising loop itself spent capturing states (the part that cannot overlap), the number and size
of the states, and that B's frames equal A's (checkpointing changes nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import method  # noqa: E402
import numpy as np  # noqa: E402

from ltxserve.config import Settings  # noqa: E402
from ltxserve.engine import Engine, GenerationJob  # noqa: E402
from ltxserve.engine import engine as engine_module  # noqa: E402
from ltxserve.engine.resume import Checkpointing, StepState  # noqa: E402
from ltxserve.engine.tiny import save_tiny_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mid", choices=["tiny", "mid"])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--every-steps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = method.pin_threads(args.threads)
    method.header(threads, f"model {args.preset}")
    job = GenerationJob(
        prompt="a lighthouse at dusk",
        width=512,
        height=320,
        duration=2,
        fps=24,
        steps=args.steps,
        guidance=4.0,
        seeds=(7,),
    )
    with tempfile.TemporaryDirectory(prefix="ltxserve-ckpt-") as tmp:
        root = Path(tmp)
        model = root / f"model-{args.preset}"
        save_tiny_model(model, args.preset)
        engine = Engine.load(Settings(data_dir=root / "data", model_path=str(model)))
        writer = ThreadPoolExecutor(max_workers=1)
        captured: list[float] = []
        sizes: list[int] = []
        outputs: dict[str, Any] = {}

        # time what the denoising loop itself spends per checkpoint (capture + hand-over)
        original = engine_module._GroupCheckpoints.step_done

        def step_done(self: Any, *a: Any, **k: Any) -> None:
            t0 = time.perf_counter()
            original(self, *a, **k)
            captured.append(time.perf_counter() - t0)

        engine_module._GroupCheckpoints.step_done = step_done  # type: ignore[method-assign]

        def write(state: StepState) -> None:
            data = state.to_bytes()
            sizes.append(len(data))
            (root / "state.pt").write_bytes(data)

        def save(state: StepState) -> None:
            writer.submit(write, state)

        def run(checkpoint: bool) -> float:
            ck = None
            if checkpoint:
                ck = Checkpointing(save=save, every_steps=args.every_steps, every_seconds=60.0)
            t0 = time.perf_counter()
            (result,) = engine.generate(job, checkpoint=ck)
            if checkpoint:
                writer.submit(lambda: None).result()  # the job is done when its last write is
            outputs["B" if checkpoint else "A"] = result.frames
            return time.perf_counter() - t0

        comparison = method.compare(
            ("no checkpoints", lambda: run(False)),
            (f"every {args.every_steps} steps", lambda: run(True)),
            pairs=args.pairs,
        )
        print(comparison.report())
        runs_b = args.pairs + 1
        per_run = sum(captured) / runs_b
        print(
            f"  in-loop hook (captures when due): {len(captured) / runs_b:.0f} calls per job, "
            f"{per_run * 1000:.1f} ms per job = {per_run / comparison.a.median:.3%} of the median job; "
            f"state size {max(sizes) / 1e6:.2f} MB"
        )
        print(
            f"  frames identical with and without checkpoints: {np.array_equal(outputs['A'], outputs['B'])}"
        )


if __name__ == "__main__":
    main()
