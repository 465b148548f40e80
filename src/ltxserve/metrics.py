"""Prometheus metrics (``prometheus-client``): one registry per process.

API nodes serve them on ``GET /metrics``; ``ltxserve worker`` on its own small listener
(``LTXSERVE_METRICS_PORT``). Counters and histograms count what this process did; the queue
gauges are read from the database (by the API at scrape time, by workers every few seconds), so
every node reports the same cluster-wide depth.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DELIVERIES",
    "QUEUE_DEPTH",
    "QUEUE_OLDEST",
    "RESULTS",
    "RUNNING",
    "STAGE_SECONDS",
    "TASK_ATTEMPTS",
    "WORKER_BUSY",
    "WORKER_UP",
    "render",
]

# Buckets from tens of milliseconds (tiny model, encode) to the 10+ minutes of a long LTX-2 job.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 2400)

QUEUE_DEPTH = Gauge("ltxserve_queue_depth", "Tasks queued and not yet claimed by a worker (cluster-wide).")
QUEUE_OLDEST = Gauge(
    "ltxserve_queue_oldest_seconds",
    "Age of the oldest queued task (cluster-wide); 0 when the queue is empty. Grows when workers "
    "fall behind.",
)
QUEUED_GPU_SECONDS = Gauge(
    "ltxserve_queued_gpu_seconds",
    "Estimated worker-seconds of the queued tasks (cluster-wide, by model; the ETA cost model "
    "calibrated on measured runs): the queue's size in time, what an autoscaler should watch.",
    ["model"],
)
RUNNING = Gauge("ltxserve_tasks_running", "Tasks a worker holds under a lease (cluster-wide).")
STAGE_SECONDS = Histogram(
    "ltxserve_stage_seconds",
    "Seconds per stage of a task: queue_wait (accepted -> claimed), generate (engine), encode "
    "(file encode), store (object store write), total (claimed -> finished).",
    ["stage"],
    buckets=BUCKETS,
)
RESULTS = Counter("ltxserve_results_total", "Results this process finished, by status.", ["status"])
WORKER_BUSY = Gauge("ltxserve_worker_busy", "1 while this process's worker holds a task, 0 when idle.")
WORKER_UP = Gauge("ltxserve_worker_up", "1 while this process's worker (model loaded) takes tasks.")
TASK_ATTEMPTS = Counter("ltxserve_task_attempts_total", "Task attempts this process started.")
CHECKPOINTS = Counter(
    "ltxserve_checkpoints_total",
    "Step checkpoints of running tasks, by outcome (written, failed: the write failed and the task "
    "went on; resumed: an attempt started from one; refused: one of another model, shape or code "
    "version, or unreadable, so the attempt started from step 0).",
    ["outcome"],
)
PREEMPTIONS = Counter(
    "ltxserve_preemptions_total", "Tasks this process checkpointed and released on SIGTERM."
)
DELIVERIES = Counter(
    "ltxserve_deliveries_total",
    "Webhook/upload attempts this process made, by kind (webhook, upload) and outcome (delivered, "
    "retry: failed and will be retried, failed: given up).",
    ["kind", "outcome"],
)


class GpuMemoryCollector(Collector):
    """``ltxserve_gpu_memory_bytes{kind}`` read at scrape time, only where this process has torch
    with CUDA initialised (it never imports torch itself: API nodes stay light)."""

    def describe(self) -> Iterator[Metric]:
        """The family without samples: the registry (and the dashboard's test) know its name."""
        yield self._family()

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "ltxserve_gpu_memory_bytes", "GPU memory of this process (torch), by kind.", labels=["kind"]
        )

    def collect(self) -> Iterator[Metric]:
        cuda = getattr(sys.modules.get("torch"), "cuda", None)  # None too while torch is importing
        try:
            if cuda is None or not cuda.is_available() or not cuda.is_initialized():
                return
            free, total = cuda.mem_get_info()
            values = {
                "allocated": cuda.memory_allocated(),
                "reserved": cuda.memory_reserved(),
                "max_allocated": cuda.max_memory_allocated(),
                "free": free,
                "total": total,
            }
        except Exception:  # a scrape must never fail because of the GPU
            return
        family = self._family()
        for kind, value in values.items():
            family.add_metric([kind], value)
        yield family


REGISTRY.register(GpuMemoryCollector())


def render() -> bytes:
    return generate_latest()
