"""Queue position and estimated finish time: a cost model calibrated from measured runs.

A task's cost is counted in three units, each multiplied by a rate measured on the workers:

* ``denoise``: steps x transformer tokens x guidance passes (2 under classifier-free guidance)
  x results, with the steps and guidance the preset actually runs (a distilled model runs 8
  steps without guidance whatever was asked) and the latents the engine makes: the generated
  ``8k + 1`` frames (``engine.planning``), and audio latents for those frames' duration. Two-stage
  refine steps are not counted separately: the measured rate absorbs them.
* ``steps``: a fixed cost per denoising step whatever its size (scheduler, guidance, launches;
  every row of a step, results and passes, goes in one call: ``batch_results``). It is most of a
  small job's denoising: a tiny-model step costs 6 ms + 12 us per token row (CPU, one thread),
  a mid-model step about 1 ms per row and nothing fixed; a per-token rate alone was 3.5x off
  between the benchmark's kinds on the tiny model.
* ``pixels``: pixels x generated frames x results: the decode, encode and store that follow,
  plus a fixed overhead per task (claim, text encoding, database and store round trips).

Each worker measures its tasks (denoise seconds from the engine's timings, the rest of the attempt
for the pixels part) and keeps its last ``HISTORY`` measurements per model. Both parts are lines
fitted by Theil-Sen (the median of the pairwise slopes, then the median intercept): seconds per
step against token rows per step (the intercept is the step cost), and rest seconds against
pixels (the intercept is the per-task overhead). Medians, because one slow task must not skew
every estimate after it: the first task of a process pays one-off costs (lazy imports,
allocator and thread-pool warm-up), 10-30x its later runs in wall time on CPU, and an average
seeded with it overestimated every queued task (+2% to +46% in ``bench/eta.py``); that first
task is not recorded at all (``Worker.cold``). A shape's first run on a worker is slow too (on
CPU the audio decoder's first run at a new length took 2-5 s instead of 0.1-0.5 s): such runs
are recorded as cold (``shape``), and the lines are fitted to the warm runs once there are 3 of
them (to all runs before that). The figures are persisted in the blob store
(``calibration/<model>.json``, one entry per worker host), so they survive restarts and every
API node reads the same. Before any measurement a conservative prior is used.

A queued task's position is the number of queued tasks accepted before it, plus one. Its
estimated start is when the running tasks' remaining work and the queued work ahead of it
would be done by the workers now busy (all of them are when a task waits); its finish adds its own
estimate. ``progress`` counts denoising steps only (it stays at 99% while the files are decoded,
encoded and stored), so a running task has ``(1 - progress) x`` its denoise estimate left plus
all of its pixels part.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ltxserve.blobs.base import BlobNotFound, BlobStore
from ltxserve.config import Settings
from ltxserve.engine.planning import plan_frames
from ltxserve.logs import get_logger
from ltxserve.presets import ModelPreset

log = get_logger(__name__)

SPATIAL, TEMPORAL, AUDIO_TOKENS_PER_SECOND = 32, 8, 25  # LTX-2's VAEs (audio: 16 kHz / 160 / 4)
#: Rates before any measurement (CPU, tiny model scale; deliberately pessimistic).
PRIOR_DENOISE = 2e-5  # seconds per (step x token x pass)
PRIOR_PIXELS = 2e-7  # seconds per output pixel-frame
HISTORY = 20  # recent tasks the rates are taken from
READ_CACHE_S = 10.0


@dataclass(frozen=True)
class Work:
    """The work counts of one task."""

    denoise: float  # steps x tokens x passes x results
    pixels: float  # pixels x generated frames x results
    steps: float = 1.0  # denoising steps (one transformer call each)

    def seconds(self, rates: Rates) -> float:
        """Estimated seconds of this work at ``rates``."""
        return self.denoise_seconds(rates) + self.rest_seconds(rates)

    def denoise_seconds(self, rates: Rates) -> float:
        return self.denoise * rates.denoise + self.steps * rates.step

    def rest_seconds(self, rates: Rates) -> float:
        """Everything but the denoising: decode, encode, store, and the per-task overhead."""
        return self.pixels * rates.pixels + rates.overhead

    def remaining(self, rates: Rates, progress: float) -> float:
        """Estimated seconds left at ``progress`` percent (of the denoising steps: the decode,
        encode and store come after the last step)."""
        left = max(0.0, 1.0 - progress / 100.0)
        return self.denoise_seconds(rates) * left + self.rest_seconds(rates)


@dataclass
class Rates:
    """Seconds per unit of work, as measured on one worker for one model (lines fitted to
    ``history``)."""

    denoise: float = PRIOR_DENOISE
    pixels: float = PRIOR_PIXELS
    samples: int = 0
    overhead: float = 0.0  # seconds per task whatever its size (claim, text encoding, stores)
    step: float = 0.0  # seconds per denoising step whatever its size
    #: recent tasks: (denoise work, steps, denoise seconds, pixels, rest seconds, cold 0/1)
    history: list[list[float]] = field(default_factory=list)


def shape(request: dict[str, Any], preset: ModelPreset) -> str:
    """What makes a run's tensors new to a worker (its first run of one pays one-off costs): the
    frame size, the clip (frames and audio length), the rows (results and guidance passes)."""
    sampling = preset.sampling(int(request.get("steps", 40)), float(request.get("CFGScale", 4.0)))
    fields = ("width", "height", "duration", "fps", "numberResults")
    return "/".join(str(request.get(f, "")) for f in fields) + f"/{sampling.passes}"


def task_work(request: dict[str, Any], preset: ModelPreset) -> Work:
    """The work of a ``videoInference`` request (the validated wire request a task row holds)."""
    width, height = int(request.get("width", 768)), int(request.get("height", 512))
    duration, fps = int(request.get("duration", 5)), int(request.get("fps", 25))
    results = int(request.get("numberResults", 1))
    sampling = preset.sampling(int(request.get("steps", 40)), float(request.get("CFGScale", 4.0)))
    plan = plan_frames(duration, fps, TEMPORAL)
    audio = round(plan.generated_frames / fps * AUDIO_TOKENS_PER_SECOND)  # as the pipeline sizes it
    tokens = plan.latent_frames * (width // SPATIAL) * (height // SPATIAL) + audio
    return Work(
        denoise=float(sampling.steps * tokens * sampling.passes * results),
        pixels=float(width * height * plan.generated_frames * results),
        steps=float(sampling.steps),
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
            sum(r.step for r in measured) / n,
        )

    async def record(self, work: Work, denoise_s: float, rest_s: float, cold: bool = False) -> Rates:
        """Fold one measured task into this worker's rates and persist them (``cold``: the
        worker's first run of its shape)."""
        async with self._lock:
            entries = dict(await self.load(fresh=True))
            mine = entries.get(self.worker, Rates())
            point = [work.denoise, work.steps, denoise_s, work.pixels, rest_s, float(cold)]
            # (entries of another layout, from an older version, are dropped)
            history = [*(p for p in mine.history if len(p) == len(point)), point][-HISTORY:]
            warm = [p for p in history if not p[5]]
            fitted = warm if len(warm) >= 3 else history
            per_step = [[d / n, s / n] for d, n, s, *_ in fitted if d > 0 and n > 0]
            denoise, step = fit_line(per_step, PRIOR_DENOISE)
            pixels, overhead = fit_line([[p, r] for *_, p, r, _ in fitted], PRIOR_PIXELS)
            mine = Rates(denoise, pixels, mine.samples + 1, overhead, step, history)
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
        left = e.work.remaining(rates, e.progress)
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
    backlog = sum(e.work.remaining(rates, e.progress) for e in running)
    backlog += queued_seconds(entries, rates)
    return backlog / max(1, len(running))


def queued_seconds(entries: list[QueueEntry], rates: Rates) -> float:
    """GPU-seconds of work waiting in the queue (the autoscaling signal)."""
    return sum(e.work.seconds(rates) for e in entries if e.status == "queued")


def fit_line(points: list[list[float]], prior: float) -> tuple[float, float]:
    """Theil-Sen ``y = slope x x + intercept`` over recent tasks, both >= 0: the median of the
    pairwise slopes, then the median intercept, so a few slow outliers (a cold first run, a busy
    neighbour) move neither. A plain median ratio while the sizes do not vary enough (fewer than
    3 tasks, or one size) to tell the two apart; ``prior`` without any point."""
    slopes = [
        (y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1
    ]
    if len(points) >= 3 and slopes:
        slope = max(0.0, statistics.median(slopes))
        overhead = statistics.median(y - slope * x for x, y in points)
        if overhead >= 0:
            return slope, overhead
    ratios = [y / x for x, y in points if x > 0]
    return (statistics.median(ratios) if ratios else prior), 0.0


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
