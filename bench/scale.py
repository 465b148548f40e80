"""Scale-out benchmark on the tiny model: PostgreSQL + SeaweedFS + 1 API node + N workers.

    python bench/scale.py [--workers 1,2,4] [--tasks 16] [--latency-samples 20]

1. Throughput at equal total cores: one worker with every core vs one single-threaded worker per
   core (interleaved pairs, ``bench/method.py``), ``--tasks`` tiny-model tasks submitted at once
   through the API; tasks per minute from the first submit to the last success. Then 1, 2, 4
   single-threaded workers, each line stating the cores asked of the machine: past its cores
   the figure measures sharing, not horizontal scaling.
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

import method  # noqa: E402

from tests.scaleout.cluster import Cluster, Weed, pg_available, pg_database  # noqa: E402

TASK = {"width": 256, "height": 256, "duration": 1, "fps": 16, "steps": 12}
SLOW = {"width": 256, "height": 256, "duration": 1, "fps": 16, "steps": 60}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def throughput(weed: Weed, model: Path, tmp: Path, workers: int, tasks: int, threads: int = 1) -> float:
    """Tasks/min of ``workers`` worker processes with ``threads`` compute threads each."""
    with pg_database("ltxserve_bench") as url:
        c = Cluster(
            url,
            weed,
            model,
            tmp / f"w{workers}x{threads}-{time.monotonic_ns()}",
            apis=1,
            workers=workers,
            OMP_NUM_THREADS=str(threads),
        )
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
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs at equal total cores")
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--latency-samples", type=int, default=20)
    args = parser.parse_args()
    method.header(None, "threads per worker process set through OMP_NUM_THREADS")
    if (reason := pg_available()) is not None:
        sys.exit(reason)
    from ltxserve.engine.tiny import save_tiny_model

    with tempfile.TemporaryDirectory(prefix="ltxserve-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        model = save_tiny_model(tmp / "tiny")
        weed = Weed(tmp / "weed")
        weed.start()
        try:
            cores = os.cpu_count() or 1
            print(f"tiny model, task {TASK}, {cores} CPU cores, {args.tasks} tasks per run")
            # Equal total cores: one worker using every core vs one single-threaded worker per core.
            print(f"\n[equal total cores: {cores}] tasks/min (higher is better)")
            cmp = method.compare(
                (f"1 worker x {cores} threads", lambda: throughput(weed, model, tmp, 1, args.tasks, cores)),
                (f"{cores} workers x 1 thread", lambda: throughput(weed, model, tmp, cores, args.tasks, 1)),
                args.pairs,
                warmup=0,
            )
            print(cmp.report(unit="/min", lower_is_better=False))
            print("\n[workers x 1 thread each] (more workers than cores share them: not horizontal scaling)")
            rates = {}
            for n in [int(x) for x in args.workers.split(",")]:
                rates[n] = throughput(weed, model, tmp, n, args.tasks)
                print(f"  {n} worker(s) x 1 thread = {n} core(s) asked of {cores}: {rates[n]:.1f} tasks/min")
            method.record(
                "scale", {"cores": cores, "rates": rates, "equal_cores": [cmp.a.samples, cmp.b.samples]}
            )
            latency_and_recovery(weed, model, tmp, args.latency_samples)
        finally:
            weed.stop()


if __name__ == "__main__":
    main()
