"""Worker overlap: throughput on a job mix with the finisher overlapped vs sequential.

    python bench/overlap.py [--preset tiny] [--jobs 8] [--pairs 5] [--threads 0]

The same server (embedded mode, real HTTP) runs the same job mix with ``worker_overlap=off``
(generate, then encode/store, then the next task) and ``on`` (the next task is generated while
the previous one is encoded, checked and stored), interleaved (``bench/method.py``). Printed:
wall time for the mix per side with its spread, the ratio and verdict, tasks per minute. On a
GPU the two stages use different hardware; on a 2-core CPU they compete for the same cores, which is why the
default is ``auto`` (on only with CUDA).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import method  # noqa: E402

from ltxserve.config import Settings  # noqa: E402
from ltxserve.engine import Engine  # noqa: E402
from ltxserve.engine.tiny import save_tiny_model  # noqa: E402
from ltxserve.testing import free_port, start_server, video_task  # noqa: E402

MIX: list[dict[str, Any]] = [
    {"width": 512, "height": 320, "duration": 2, "fps": 24, "steps": 4, "outputFormat": "MP4"},
    {"width": 384, "height": 256, "duration": 3, "fps": 24, "steps": 4, "outputFormat": "WEBM"},
    {"width": 512, "height": 320, "duration": 2, "fps": 24, "steps": 4, "numberResults": 2},
    {"width": 256, "height": 256, "duration": 4, "fps": 25, "steps": 4, "outputFormat": "MOV"},
]


def run_mix(engine: Engine, tmp: Path, overlap: str, jobs: int) -> float:
    settings = Settings(
        data_dir=tmp / overlap,
        port=free_port(),
        worker_overlap=overlap,
        log_level="WARNING",
        max_sequence_length=64,
    )
    gen = start_server(settings, engine)
    live = next(gen)
    try:
        tasks = [video_task(**MIX[i % len(MIX)], seed=i, CFGScale=1) for i in range(jobs)]
        t0 = time.perf_counter()
        assert live.post(tasks).status_code == 200
        for task in tasks:
            live.wait(task["taskUUID"], timeout=1800)
        return time.perf_counter() - t0
    finally:
        for _ in gen:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=method.DEFAULT_PAIRS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    args = parser.parse_args()

    threads = method.pin_threads(args.threads or None)
    method.header(threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = save_tiny_model(tmp / "model", args.preset)
        engine = Engine.load(Settings(data_dir=tmp, model_path=str(model), max_sequence_length=64))
        print(
            f"[overlap, {args.preset}] {args.jobs} tasks (mix of sizes, formats, numberResults), quality 95"
        )
        cmp = method.compare(
            ("worker_overlap=off", lambda: run_mix(engine, tmp, "off", args.jobs)),
            ("worker_overlap=on", lambda: run_mix(engine, tmp, "on", args.jobs)),
            args.pairs,
        )
    print(cmp.report())
    print(
        f"  tasks/min (median): off {args.jobs / cmp.a.median * 60:.1f}, "
        f"on {args.jobs / cmp.b.median * 60:.1f}; "
        "target: on >= 1.2x off in throughput (B/A <= 0.83)"
    )


if __name__ == "__main__":
    main()
