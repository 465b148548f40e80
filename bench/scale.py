"""Scale-out benchmark on the tiny model: PostgreSQL + SeaweedFS + 1 API node + N workers.

    python bench/scale.py [--workers 1,2,4] [--tasks 16] [--latency-samples 20]

1. Throughput: N workers (``ltxserve worker`` processes, one compute thread each, as a GPU box
   runs one worker per GPU), ``--tasks`` tiny-model tasks submitted at once through the API;
   tasks per minute from the first submit to the last success, and the ratio to 1 worker.
2. Enqueue-to-claim latency with an idle worker: one task at a time, ``started_at -
   created_at`` from the tasks table (commit of the submit -> NOTIFY -> procrastinate fetch ->
   claim of the row), p50/p99.
3. Recovery after a worker SIGKILL (lease 3 s, sweeper every 0.5 s): from the kill to the task
   being claimed again by the other worker, and to its success.

Everything runs on this machine; with 2 cores the throughput flattens once workers outnumber
cores (each denoising step is CPU-bound here), which is the point of printing the ratio.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.scaleout.cluster import Cluster, Weed, pg_available, pg_database  # noqa: E402

TASK = {"width": 256, "height": 256, "duration": 1, "fps": 16, "steps": 12}
SLOW = {"width": 256, "height": 256, "duration": 1, "fps": 16, "steps": 60}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def throughput(weed: Weed, model: Path, tmp: Path, workers: int, tasks: int) -> float:
    with pg_database("ltxserve_bench") as url:
        c = Cluster(url, weed, model, tmp / f"w{workers}", apis=1, workers=workers)
        try:
            c.start(timeout=300)
            # Warm every worker (first-call overheads) before timing.
            warm = [c.submit(0, **TASK) for _ in range(workers)]
            for u in warm:
                c.wait_done(0, u, timeout=300)
            t0 = time.monotonic()
            uuids = [c.submit(0, **TASK) for _ in range(tasks)]
            for u in uuids:
                assert not c.wait_done(0, u, timeout=600).get("errors")
            elapsed = time.monotonic() - t0
        finally:
            c.stop()
    return tasks / elapsed * 60


def latency_and_recovery(weed: Weed, model: Path, tmp: Path, samples: int) -> None:
    with pg_database("ltxserve_bench") as url:
        c = Cluster(url, weed, model, tmp / "latency", apis=1, workers=2)
        try:
            c.start(timeout=300)
            waits = []
            for _ in range(samples):
                u = c.submit(0, **TASK)
                c.wait_done(0, u)
                ((wait,),) = c.db(
                    "SELECT EXTRACT(EPOCH FROM started_at - created_at) FROM tasks WHERE task_uuid = %s", u
                )
                waits.append(float(wait) * 1000)
            print(
                f"enqueue-to-claim (idle workers, {samples} tasks): p50 {statistics.median(waits):.1f} ms, "
                f"p99 {percentile(waits, 0.99):.1f} ms, max {max(waits):.1f} ms"
            )
            u = c.submit(0, **SLOW)
            victim = c.worker_running(u)
            c.wait_db("SELECT 1 FROM tasks WHERE task_uuid = %s AND progress > 0", u)
            victim.signal(signal.SIGKILL)
            t_kill = time.monotonic()
            c.wait_db(
                "SELECT 1 FROM tasks WHERE task_uuid = %s AND status='running' AND attempts=2", u, timeout=120
            )
            reclaimed = time.monotonic() - t_kill
            assert not c.wait_done(0, u, timeout=300).get("errors")
            done = time.monotonic() - t_kill
            lease = float(c.env["LTXSERVE_LEASE_S"])
            print(
                f"recovery after SIGKILL (lease {lease:g} s, sweep {c.env['LTXSERVE_SWEEP_INTERVAL_S']} s): "
                f"claimed again after {reclaimed:.1f} s, finished {done:.1f} s after the kill"
            )
        finally:
            c.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--latency-samples", type=int, default=20)
    args = parser.parse_args()
    if (reason := pg_available()) is not None:
        sys.exit(reason)
    from ltxserve.engine.tiny import save_tiny_model

    with tempfile.TemporaryDirectory(prefix="ltxserve-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        model = save_tiny_model(tmp / "tiny")
        weed = Weed(tmp / "weed")
        weed.start()
        try:
            print(f"tiny model, task {TASK}, {os.cpu_count()} CPU cores, one compute thread per worker")
            rates: dict[int, float] = {}
            for n in [int(x) for x in args.workers.split(",")]:
                rates[n] = throughput(weed, model, tmp, n, args.tasks)
                base = rates.get(1)
                ratio = f", x{rates[n] / base:.2f} vs 1 worker" if base else ""
                print(f"{n} worker(s): {rates[n]:.1f} tasks/min ({args.tasks} tasks){ratio}")
            latency_and_recovery(weed, model, tmp, args.latency_samples)
        finally:
            weed.stop()


if __name__ == "__main__":
    main()
