"""Queue position and estimated finish time: a cost model calibrated from measured runs.

A task's cost is two work counts, each multiplied by a rate measured on the workers:

* ``denoise``: steps x transformer tokens (video latents + audio latents) x guidance passes
  (2 under classifier-free guidance) x results, with the steps and guidance the preset actually
  runs (a distilled model runs 8 steps without guidance whatever was asked). Two-stage refine
  steps are not counted separately: the measured rate absorbs them.
* ``pixels``: output pixels x frames x results: the decode, encode and store that follow,
  plus a fixed overhead per task (claim, text encoding, database and store round trips).

Each worker measures its tasks (denoise seconds from the engine's timings, the rest of the attempt
for the pixels part) and keeps an exponential moving average of the denoise rate and a
least-squares line (pixel rate and overhead) over its last tasks, per model; it persists them in
the blob store (``calibration/<model>.json``, one entry per worker host), so
they survive restarts and every API node reads the same figures. Before any measurement a
conservative prior is used.

A queued task's position is the number of queued tasks accepted before it, plus one. Its
estimated start is when the running tasks' remaining work and the queued work ahead of it
would be done by the workers now busy (all of them are when a task waits); its finish adds its own
estimate. A running task finishes after ``(1 - progress) x`` its estimate.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ltxserve.blobs.base import BlobNotFound, BlobStore
from ltxserve.config import Settings
from ltxserve.logs import get_logger
from ltxserve.presets import ModelPreset

log = get_logger(__name__)

SPATIAL, TEMPORAL, AUDIO_TOKENS_PER_SECOND = 32, 8, 25
#: Rates before any measurement (CPU, tiny model scale; deliberately pessimistic).
PRIOR_DENOISE = 2e-5  # seconds per (step x token x pass)
PRIOR_PIXELS = 2e-7  # seconds per output pixel-frame
EMA = 0.3  # weight of the newest measurement (denoise rate)
HISTORY = 20  # recent tasks the pixels-and-overhead line is fitted to
READ_CACHE_S = 10.0


@dataclass(frozen=True)
class Work:
    """The two work counts of one task (or of what is left of it)."""

    denoise: float
    pixels: float

    def seconds(self, rates: Rates) -> float:
        """Estimated seconds of this work at ``rates``."""
        return self.denoise * rates.denoise + self.pixels * rates.pixels + rates.overhead


@dataclass
class Rates:
    """Seconds per unit of work, as measured (EMA) on one worker for one model."""

    denoise: float = PRIOR_DENOISE
    pixels: float = PRIOR_PIXELS
    samples: int = 0
    overhead: float = 0.0  # seconds per task whatever its size (claim, text encoding, stores)
    history: list[list[float]] = field(default_factory=list)  # recent (pixels, rest seconds)


def task_work(request: dict[str, Any], preset: ModelPreset) -> Work:
    """The work of a ``videoInference`` request (the validated wire request a task row holds)."""
    width, height = int(request.get("width", 768)), int(request.get("height", 512))
    duration, fps = int(request.get("duration", 5)), int(request.get("fps", 25))
    results = int(request.get("numberResults", 1))
    sampling = preset.sampling(int(request.get("steps", 40)), float(request.get("CFGScale", 4.0)))
    frames = duration * fps
    latent_frames = (frames + TEMPORAL - 2) // TEMPORAL + 1  # 8k+1 frames cover the clip
    tokens = latent_frames * (width // SPATIAL) * (height // SPATIAL) + AUDIO_TOKENS_PER_SECOND * duration
    passes = sampling.passes
    return Work(
        denoise=float(sampling.steps * tokens * passes * results),
        pixels=float(width * height * frames * results),
    )


class Calibration:
    """Per-model rates: this worker's (updated from its own runs) and the pool's (read back)."""

    def __init__(self, blobs: BlobStore, model: str, worker: str | None = None) -> None:
        self.blobs = blobs
        self.model = model
        self.key = f"calibration/{_safe(model)}.json"
        self.worker = worker or socket.gethostname()
        self._entries: dict[str, Rates] = {}
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def load(self, fresh: bool = False) -> dict[str, Rates]:
        """The stored rates per worker (re-read after ``READ_CACHE_S``, or now if ``fresh``)."""
        if not fresh and time.monotonic() - self._read_at < READ_CACHE_S:
            return self._entries
        try:
            raw = json.loads(await self.blobs.get_bytes(self.key))
            self._entries = {w: Rates(**v) for w, v in raw.items()}
        except BlobNotFound:
            self._entries = {}
        except Exception as exc:  # a broken file only costs accuracy
            log.warning("calibration unreadable; using the prior", key=self.key, error=repr(exc))
        self._read_at = time.monotonic()
        return self._entries

    async def rates(self) -> Rates:
        """The pool's rates: the mean over the workers that measured something."""
        measured = [r for r in (await self.load()).values() if r.samples > 0]
        if not measured:
            return Rates()
        n = len(measured)
        return Rates(
            sum(r.denoise for r in measured) / n,
            sum(r.pixels for r in measured) / n,
            sum(r.samples for r in measured),
            sum(r.overhead for r in measured) / n,
        )

    async def record(self, work: Work, denoise_s: float, rest_s: float) -> Rates:
        """Fold one measured task into this worker's rates and persist them."""
        async with self._lock:
            entries = dict(await self.load(fresh=True))
            mine = entries.get(self.worker, Rates())
            new_d = denoise_s / work.denoise if work.denoise > 0 else mine.denoise
            denoise = new_d if mine.samples == 0 else (1 - EMA) * mine.denoise + EMA * new_d
            history = [*mine.history, [work.pixels, rest_s]][-HISTORY:]
            pixels, overhead = fit_line(history)
            mine = Rates(denoise, pixels, mine.samples + 1, overhead, history)
            entries[self.worker] = mine
            body = json.dumps({w: asdict(r) for w, r in entries.items()}).encode()
            await self.blobs.put_bytes(self.key, body, "application/json")
            self._entries, self._read_at = entries, time.monotonic()
            return mine


@dataclass(frozen=True)
class QueueEntry:
    """What the estimate needs of an active task."""

    id: str
    status: str
    created_at: datetime
    work: Work
    progress: float  # percent


@dataclass(frozen=True)
class Estimate:
    position: int | None  # 1 = next to start; None once running
    seconds: float  # until it finishes


def estimate_all(entries: list[QueueEntry], rates: Rates) -> dict[str, Estimate]:
    """Position and time to finish of every active task (queued in ``created_at`` order)."""
    running = [e for e in entries if e.status == "running"]
    queued = sorted((e for e in entries if e.status == "queued"), key=lambda e: e.created_at)
    workers = max(1, len(running))
    out: dict[str, Estimate] = {}
    backlog = 0.0
    for e in running:
        left = e.work.seconds(rates) * max(0.0, 1.0 - e.progress / 100.0)
        out[e.id] = Estimate(None, left)
        backlog += left
    for i, e in enumerate(queued):
        own = e.work.seconds(rates)
        start = backlog / workers
        out[e.id] = Estimate(i + 1, start + own)
        backlog += own
    return out


def start_seconds(entries: list[QueueEntry], rates: Rates) -> float:
    """When a task submitted now would start: all running and queued work before it."""
    running = [e for e in entries if e.status == "running"]
    backlog = sum(e.work.seconds(rates) * max(0.0, 1.0 - e.progress / 100.0) for e in running)
    backlog += queued_seconds(entries, rates)
    return backlog / max(1, len(running))


def queued_seconds(entries: list[QueueEntry], rates: Rates) -> float:
    """GPU-seconds of work waiting in the queue (the autoscaling signal)."""
    return sum(e.work.seconds(rates) for e in entries if e.status == "queued")


def fit_line(points: list[list[float]]) -> tuple[float, float]:
    """Least squares ``rest = slope x pixels + overhead`` over recent tasks, both >= 0 (a plain
    ratio while the sizes do not vary enough to tell the two apart)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    n = len(points)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if n >= 3 and var > 0:
        slope = sum((x - mx) * (y - my) for x, y in points) / var
        overhead = my - slope * mx
        if slope > 0 and overhead >= 0:
            return slope, overhead
    return (sum(ys) / sum(xs) if sum(xs) > 0 else PRIOR_PIXELS), 0.0


def wire_fields(estimate: Estimate) -> dict[str, Any]:
    """The extra fields of a ``processing`` item (what the playground and SDK users read)."""
    fields: dict[str, Any] = {"etaSeconds": round(estimate.seconds, 1)}
    if estimate.position is not None:
        fields["queuePosition"] = estimate.position
    return fields


def model_name(settings: Settings) -> str:
    """The calibration key: the served weights and how they sample."""
    return f"{settings.preset().name}-{Path(settings.model_path).name if settings.model_path else 'tiny'}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
