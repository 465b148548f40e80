"""Run every benchmark and write bench/RESULTS.md (``make bench``).

Each benchmark prints its own reference from the same run (plain diffusers, the ffmpeg binary,
a bare Starlette app, sequential processing); this script only runs them one after another,
records the machine and versions, and keeps their output verbatim.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCHES = [
    ("Engine vs plain diffusers; stream; lossy options", ["engine.py"]),
    ("Encoder vs the ffmpeg binary", ["media.py"]),
    ("Safety classifier cost", ["safety.py"]),
    ("API: getResponse vs bare Starlette; service overhead", ["api.py"]),
    ("Worker overlap", ["overlap.py"]),
    ("Scale-out", ["scale.py"]),
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def versions() -> str:
    import diffusers
    import torch
    import transformers

    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (
        f"python {platform.python_version()}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"transformers {transformers.__version__}, ltxserve git {sha.stdout.strip() or '?'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma list of script names, e.g. engine.py,api.py")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    sections = [
        "# Benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        f"- versions: {versions()}",
        "- command: `make bench` (or `python bench/run_all.py`); each section is one script's output.",
        "",
    ]
    for title, command in BENCHES:
        script = command[0]
        if only and script not in only:
            continue
        if not (HERE / script).exists():
            continue
        print(f"== {script}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *command[1:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "LTXSERVE_LOG_LEVEL": "WARNING"},
        )
        print(proc.stdout)
        status = "" if proc.returncode == 0 else f" (exit status {proc.returncode})"
        output = proc.stdout if proc.returncode == 0 else proc.stdout + "\n" + proc.stderr[-3000:]
        sections += [
            f"## {title} (`bench/{script}`){status}",
            "",
            f"{time.perf_counter() - t0:.0f} s wall.",
            "",
            "```",
            output.strip(),
            "```",
            "",
        ]
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
