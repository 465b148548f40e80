"""Run every benchmark and write bench/RESULTS.md (``make bench``).

Each benchmark prints its own reference from the same run (plain diffusers, the ffmpeg binary,
a bare Starlette app, sequential processing); this script only runs them one after another,
records the machine and versions, and keeps their output verbatim.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: (title, [script, args...], takes --pairs)
BENCHES = [
    ("Engine vs plain diffusers; stream vs diffusers batched; lossy options", ["engine.py"], True),
    ("Batching across requests", ["batching.py"], True),
    ("Encoder vs the ffmpeg binary", ["media.py"], True),
    ("Safety classifier cost", ["safety.py"], False),
    ("API: getResponse vs bare Starlette; service overhead", ["api.py"], True),
    ("Peak memory of long clips", ["memory.py"], False),
    ("ETA error on a mixed workload", ["eta.py"], False),
    ("Checkpoint cost", ["checkpoint.py"], False),
    ("Worker overlap", ["overlap.py"], False),
    ("Scale-out", ["scale.py"], True),
    (
        "Abuse: another client's ping and server memory under unauthenticated floods; cancel latency",
        ["abuse.py"],
        False,
    ),
]


#: The pictures ``make bench`` draws (file name without .png: caption).
PICTURES = {
    "overhead": "Where the end-to-end time goes",
    "batching": "Batching across requests: time ratios vs batch size",
    "polling": "Latency vs concurrent pollers",
    "scale": "Scale-out: tasks/min vs workers",
}

_LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?Z? *\[|^(Loading|Writing|Fetching) |it/s\]"
)


def clean(output: str) -> str:
    """A script's output without log records and progress bars."""
    return "\n".join(line for line in output.strip().splitlines() if not _LOG_LINE.search(line))


def _sections(text: str) -> dict[str, str]:
    """Sections of an earlier RESULTS.md by script name (``--keep``)."""
    out = {}
    for block in text.split("\n## ")[1:]:
        m = re.search(r"\(`bench/([a-z_]+\.py)`\)", block.splitlines()[0])
        if m:
            out[m.group(1)] = "## " + block.rstrip()
    return out


def plots(data: Path, out: Path) -> list[str]:
    """PNGs next to RESULTS.md from the figures the scripts recorded; their Markdown links."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def load(name: str) -> Any:
        path = data / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    links: list[str] = []

    def save(fig: Any, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        plt.close(fig)
        links.append(f"![{caption}]({name}.png)")

    overheads = {p: d for p in ("tiny", "mid") if (d := load(f"overhead_{p}"))}
    if overheads:  # one panel per model: their scales differ by ~30x
        fig, axes = plt.subplots(len(overheads), 1, figsize=(6, 1.2 + 1.3 * len(overheads)), squeeze=False)
        for ax, (preset, d) in zip(axes[:, 0], overheads.items(), strict=True):
            labels, model, rest = [], [], []
            for key, name in (("after", "encode after"), ("streamed", "streamed")):
                total = statistics.median(d[key])
                pct = statistics.median(d["overhead"]["true" if key == "streamed" else "false"])
                labels.append(name)
                model.append(total * (1 - pct / 100))
                rest.append(total * pct / 100)
            alone = load(f"overhead_vs_alone_{preset}")
            if alone:  # the same job through the engine alone: the model unslowed, no file
                labels.append("engine alone")
                model.append(statistics.median(alone["alone_model"]))
                rest.append(statistics.median(alone["alone"]) - model[-1])
            ax.barh(labels, model, label="transformer + VAE decodes")
            ax.barh(labels, rest, left=model, label="everything else")
            ax.set_title(f"{preset} model, 768x512, 4 s, 20 steps (seconds, median)", fontsize=9)
            ax.set_xlim(0, 1.7 * max(m + r for m, r in zip(model, rest, strict=True)))  # room for the key
        axes[0, 0].legend(fontsize=7, loc="lower right")
        save(fig, "overhead", PICTURES["overhead"])
    batching = load("batching")
    if batching:  # per-pair ratios: each comparison's pairs ran at the same load
        fig, ax = plt.subplots(figsize=(5, 3))
        sizes = sorted(batching["seconds"], key=int)
        for a_key, b_key, name in (
            ("alone", "batched", "batched / one at a time"),
            ("diffusers", "batched_ref", "batched / diffusers batched"),
        ):
            kept = [n for n in sizes if a_key in batching["seconds"][n] and b_key in batching["seconds"][n]]
            rows = [batching["seconds"][n] for n in kept]
            if not rows:
                continue
            ratios = [[b / a for a, b in zip(r[a_key], r[b_key], strict=True)] for r in rows]
            med = [statistics.median(r) for r in ratios]
            err = [
                [m - min(r) for m, r in zip(med, ratios, strict=True)],
                [max(r) - m for m, r in zip(med, ratios, strict=True)],
            ]
            xs = [int(n) for n in kept]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=name)
        ax.axhline(1.0, linestyle=":", color="gray")
        ax.set_xlabel("jobs of one shape")
        ax.set_ylabel("time ratio, median [min .. max]")
        ax.set_title(f"{batching['preset']} model (below 1: batched is faster)", fontsize=9)
        ax.legend(fontsize=7)
        save(fig, "batching", PICTURES["batching"])
    polling = load("polling")
    if polling:
        fig, ax = plt.subplots(figsize=(5, 3))
        levels = sorted(polling, key=int)
        for key, name in (("ours", "ltxserve"), ("bare", "bare Starlette")):
            for q in ("p50_ms", "p99_ms"):
                ax.plot(
                    [int(c) for c in levels],
                    [statistics.median(r[q] for r in polling[c][key]) for c in levels],
                    marker="o",
                    label=f"{name} {q[:3]}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent pollers")
        ax.set_ylabel("getResponse latency, ms")
        ax.legend(fontsize=7)
        save(fig, "polling", PICTURES["polling"])
    scale = load("scale")
    if scale:
        fig, ax = plt.subplots(figsize=(5, 3))
        workers = sorted(scale["rates"], key=int)
        ax.plot([int(w) for w in workers], [scale["rates"][w] for w in workers], marker="o")
        ax.axvline(scale["cores"], linestyle=":", color="gray")
        ax.set_xlabel(f"workers x 1 thread ({scale['cores']} cores: dotted)")
        ax.set_ylabel("tasks/min")
        save(fig, "scale", PICTURES["scale"])
    return links


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
    parser.add_argument(
        "--pairs", type=int, default=0, help="interleaved pairs (0: each script's default, 5)"
    )
    parser.add_argument(
        "--log", action="append", default=[], help="SCRIPT=FILE: use that saved output instead of running it"
    )
    parser.add_argument("--note", default="", help="a line for the header (e.g. how this file was made)")
    parser.add_argument("--keep", action="store_true", help="with --only: keep the other sections of --out")
    parser.add_argument("--data", type=Path, default=None, help="folder of recorded figures (default: new)")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="ltxserve-bench-data-"))
    only = {s for s in args.only.split(",") if s}
    sections = [
        "# Benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        f"- versions: {versions()}",
        "- command: `make bench` (or `python bench/run_all.py`); each section is one script's output and "
        "begins with the exact command that reproduces it. Method (`bench/method.py`): A and B interleaved, "
        "min/median/max per side, the per-pair ratio B/A as median [min .. max], and a verdict: "
        '"within noise" when that range covers 1.0.',
        *([f"- note: {args.note}"] if args.note else []),
        "",
    ]
    logs = dict(item.split("=", 1) for item in args.log)
    old = _sections(args.out.read_text()) if args.keep and args.out.exists() else {}
    skipped: list[str] = []
    for title, command, takes_pairs in BENCHES:
        script = command[0]
        if script in logs:  # a run made separately (its first line is the command that made it)
            text = Path(logs[script]).read_text()
            sections += [
                f"## {title} (`bench/{script}`)",
                "",
                "Run separately.",
                "",
                "```",
                clean(text),
                "```",
                "",
            ]
            continue
        if only and script not in only:
            if script in old:
                sections += [old[script], ""]
            else:
                skipped.append(f"`python bench/{' '.join(command)}` ({title})")
            continue
        if not (HERE / script).exists():
            continue
        print(f"== {script}", flush=True)
        pairs_args = ["--pairs", str(args.pairs)] if args.pairs and takes_pairs else []
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *command[1:], *pairs_args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "LTXSERVE_LOG_LEVEL": "WARNING", "LTXSERVE_BENCH_DATA": str(data)},
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
            clean(output),
            "```",
            "",
        ]
    # bench/gpu.py runs on GPU machines only, not in `make bench`: its last section stays
    earlier = _sections(args.out.read_text()).get("gpu.py") if args.out.exists() else None
    if earlier:
        sections += [earlier.split("\n<!-- --8<--")[0].rstrip(), ""]
    else:
        skipped.append("`python bench/gpu.py` (full-size LTX-2 19B, one job over 1-8 GPUs: needs a CUDA GPU)")
    if skipped:
        sections += ["## Not run for this file", "", *[f"- {line}" for line in skipped], ""]
    # The docs include the text between the markers (pymdownx.snippets); the pictures stay here,
    # beside their PNGs.
    sections[0:0] = ["<!-- --8<-- [start:results] -->", ""]
    sections += ["<!-- --8<-- [end:results] -->", ""]
    links = plots(data, args.out.parent)
    drawn = {link.rsplit("(", 1)[1].rstrip(")") for link in links}
    for name, caption in PICTURES.items():  # not recorded this time: the picture of an earlier run
        if f"{name}.png" not in drawn and (args.out.parent / f"{name}.png").exists():
            links.append(f"![{caption} (an earlier run)]({name}.png)")
    if links:
        sections += ["## Pictures", "", *[f"{link}\n" for link in links]]
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
