"""The one measuring method of every ``bench/`` script.

* **Pinned threads**: ``pin_threads`` fixes torch's intra-op threads (and the OpenMP/BLAS
  variables for anything started later) and ``header`` states them with the machine's load.
* **Interleaved**: ``compare`` runs A and B alternately after ``warmup`` rounds of each, the
  order flipped every other pair (A B, B A, A B, ...), so drift from the machine's other users
  lands on both sides, a steady rise or fall included.
* **Spread**: each side reports min / median / max; the ratio B/A is taken per pair and reported
  as its median with the [min, max] of the pairs.
* **Verdict**: "within noise" when the pairs' ratio range covers 1.0 (the effect is smaller
  than the run-to-run spread); otherwise B is faster or slower, with the median factor.
* **Reproducible**: ``header`` prints the exact command line that produced the output.

Kept free of ltxserve imports so it can be loaded before torch is configured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PAIRS = 5
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_threads(threads: int | None = None) -> int:
    """Pin torch's compute threads (default: every core) and the thread env of child processes."""
    n = threads or os.cpu_count() or 1
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)
    return n


def header(threads: int | None, note: str = "") -> None:
    """Print what reproduces this output: the command, the threads, the cores, the load."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path.cwd())
    command = " ".join(["python", *(shlex.quote(a) for a in [str(script), *sys.argv[1:]])])
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    pinned = f"{threads} compute thread(s) pinned" if threads else "threads not pinned"
    print(f"reproduce: {command}")
    print(f"{pinned}; {os.cpu_count()} cores visible; load average {load}" + (f"; {note}" if note else ""))


@dataclass
class Side:
    """Samples of one side (seconds, or any figure where lower is better unless said)."""

    name: str
    samples: list[float] = field(default_factory=list)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def spread(self, unit: str = "s", digits: int = 3) -> str:
        return f"{self.median:.{digits}f} {unit} [{self.min:.{digits}f} .. {self.max:.{digits}f}]"


@dataclass
class Ratio:
    """Per-pair ratios B/A; ``verdict`` reads them against 1.0 (no effect)."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def verdict(self, lower_is_better: bool = True) -> str:
        if len(self.values) < 2:  # a single ratio has no spread to read its effect against
            return "one pair: no spread, no verdict"
        if self.low <= 1.0 <= self.high:
            return "within noise"
        better = self.median < 1.0 if lower_is_better else self.median > 1.0
        factor = 1 / self.median if self.median < 1.0 else self.median
        return f"B {'better' if better else 'worse'} ({factor:.2f}x)"

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.low:.3f} .. {self.high:.3f}]"


def ratio(a: Sequence[float], b: Sequence[float]) -> Ratio:
    """Per-pair B/A of two interleaved sample lists."""
    return Ratio([y / x for x, y in zip(a, b, strict=True)])


@dataclass
class Comparison:
    a: Side
    b: Side

    @property
    def ratio(self) -> Ratio:
        return ratio(self.a.samples, self.b.samples)

    def report(self, unit: str = "s", lower_is_better: bool = True, indent: str = "  ") -> str:
        r = self.ratio
        width = max(len(self.a.name), len(self.b.name))
        return "\n".join(
            [
                f"{indent}A {self.a.name:<{width}}  {self.a.spread(unit)}   (median [min .. max])",
                f"{indent}B {self.b.name:<{width}}  {self.b.spread(unit)}",
                f"{indent}B/A {r} over {len(r.values)} interleaved pairs: {r.verdict(lower_is_better)}",
            ]
        )


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """Wrap ``fn`` so it returns its wall time in seconds."""

    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def compare(
    a: tuple[str, Callable[[], float]],
    b: tuple[str, Callable[[], float]],
    pairs: int = DEFAULT_PAIRS,
    warmup: int = 1,
) -> Comparison:
    """A and B ``pairs`` times (order flipped every other pair), after ``warmup`` unrecorded rounds;
    each callable returns its figure."""
    (name_a, run_a), (name_b, run_b) = a, b
    for _ in range(warmup):
        run_a()
        run_b()
    side_a, side_b = Side(name_a), Side(name_b)
    for i in range(pairs):  # A B, B A, A B, ...: a load that drifts one way favours neither side
        if i % 2 == 0:
            side_a.samples.append(run_a())
            side_b.samples.append(run_b())
        else:
            side_b.samples.append(run_b())
            side_a.samples.append(run_a())
    return Comparison(side_a, side_b)


def record(name: str, data: object) -> None:
    """Keep figures for ``bench/run_all.py``'s plots (``$LTXSERVE_BENCH_DATA/<name>.json``)."""
    folder = os.environ.get("LTXSERVE_BENCH_DATA")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(data))
