"""ETA error on a mixed workload: the estimate a client sees when it submits vs the real finish.

    python bench/eta.py [--preset tiny] [--warmup 6] [--jobs 12] [--shuffle SEED]

An embedded server (real HTTP, one worker) first runs ``--warmup`` tasks of the mix to calibrate
its rates (the cost model of ``ltxserve.service.eta``, as a fresh deployment would after its
first tasks). Then ``--jobs`` tasks of the mix (sizes, durations, steps, guidance on/off,
numberResults 1-2) are submitted at once; right after submission each task's ``etaSeconds`` is
read from ``getResponse``, and its actual finish is taken from polling. Printed: per task the
estimate, the actual time and the error, then the median and the spread of the absolute error
relative to the actual time (target: median <= 20%). ``--shuffle SEED`` draws the warm-up and
the batch from the mix in another order (a check that the model does not fit one sequence).

The client shares the server's process, so it polls as a client elsewhere would without
loading it: one keep-alive ``httpx.Client``, one ``getResponse`` request for all unfinished
tasks. A fresh client per request (``httpx.post``) costs ~30 ms of this process's CPU (client and
connection set-up), and polling each of the batch's tasks that way slowed the measured tasks by
~80% (tiny model, load 11), a load the warm-up (one task polled) did not have: the measurement,
not the estimate, was off.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import method  # noqa: E402

from ltxserve.config import Settings  # noqa: E402
from ltxserve.engine import Engine  # noqa: E402
from ltxserve.engine.tiny import save_tiny_model  # noqa: E402
from ltxserve.testing import free_port, start_server, video_task  # noqa: E402

MIX: list[dict[str, Any]] = [
    {"width": 256, "height": 256, "duration": 1, "fps": 16, "steps": 8, "CFGScale": 1},
    {"width": 384, "height": 256, "duration": 2, "fps": 24, "steps": 4, "CFGScale": 4},
    {"width": 256, "height": 192, "duration": 2, "fps": 16, "steps": 12, "CFGScale": 1, "numberResults": 2},
    {"width": 512, "height": 320, "duration": 1, "fps": 24, "steps": 6, "CFGScale": 3},
    {"width": 192, "height": 192, "duration": 3, "fps": 12, "steps": 16, "CFGScale": 1},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "mid"])
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED", help="another mix order")
    args = parser.parse_args()
    threads = method.pin_threads(args.threads)
    method.header(threads, f"model {args.preset}")
    with tempfile.TemporaryDirectory(prefix="ltxserve-eta-") as tmp:
        root = Path(tmp)
        model = root / f"model-{args.preset}"
        save_tiny_model(model, args.preset)
        settings = Settings(
            data_dir=root / "data",
            model_path=str(model),
            port=free_port(),
            log_level="WARNING",
            max_sequence_length=64,
            progress_interval_s=0.5,
            max_active_tasks_per_key=100,
        )
        engine = Engine.load(settings)
        gen = start_server(settings, engine)
        live = next(gen)
        client = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.key}"}, timeout=60)

        def post(tasks: list[dict[str, Any]]) -> Any:
            reply = client.post("/v1", json=tasks)
            assert reply.status_code == 200, reply.text
            return reply.json()

        def done(uuids: list[str]) -> set[str]:
            """Which of these tasks ended (one getResponse request for all of them)."""
            body = post([{"taskType": "getResponse", "taskUUID": u} for u in uuids])
            ended = {e.get("taskUUID") for e in body.get("errors", [])}
            items: dict[str, list[str]] = {}
            for item in body.get("data", []):
                items.setdefault(item["taskUUID"], []).append(item.get("status", ""))
            return ended | {u for u, states in items.items() if all(s == "success" for s in states)}

        try:
            # 1. calibrate on the same mix (each kind once, then repeats)
            warmup = [MIX[i % len(MIX)] for i in range(args.warmup)]
            batch = [MIX[(i * 3) % len(MIX)] for i in range(args.jobs)]
            if args.shuffle is not None:
                draw = random.Random(args.shuffle)
                warmup = [draw.choice(MIX) for _ in warmup]
                batch = [draw.choice(MIX) for _ in batch]
            for i, kind in enumerate(warmup):
                task = video_task(**kind, seed=1000 + i)
                post([task])
                while not done([task["taskUUID"]]):
                    time.sleep(0.1)
            # 2. the measured batch: all queued at once
            tasks = [video_task(**kind, seed=i) for i, kind in enumerate(batch)]
            t0 = time.monotonic()
            post(tasks)
            estimates = {}
            for task in tasks:
                body = post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
                if "data" not in body:
                    raise SystemExit(f"getResponse failed: {body}")
                (item, *_) = body["data"]
                estimates[task["taskUUID"]] = (time.monotonic() - t0) + float(item.get("etaSeconds", 0.0))
            finished: dict[str, float] = {}
            while len(finished) < len(tasks):
                for uuid in done([t["taskUUID"] for t in tasks if t["taskUUID"] not in finished]):
                    finished[uuid] = time.monotonic() - t0
                time.sleep(0.1)
        finally:
            client.close()
            for _ in gen:
                pass
    errors = []
    print(f"{'task':>4} {'size':>12} {'steps':>5} {'n':>2} {'estimate s':>10} {'actual s':>9} {'error':>7}")
    for i, task in enumerate(tasks):
        est, act = estimates[task["taskUUID"]], finished[task["taskUUID"]]
        err = (est - act) / act
        errors.append(abs(err))
        size = f"{task['width']}x{task['height']}x{task['duration']}s"
        print(
            f"{i:>4} {size:>12} {task['steps']:>5} {task.get('numberResults', 1):>2} "
            f"{est:>10.1f} {act:>9.1f} {err:>+7.1%}"
        )
    print(
        f"absolute error / actual: median {statistics.median(errors):.1%}, "
        f"min {min(errors):.1%}, max {max(errors):.1%} over {len(errors)} tasks (target: median <= 20%)"
    )


if __name__ == "__main__":
    main()
