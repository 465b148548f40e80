"""Abuse benchmark: another client's ping latency and the server's memory while it is flooded.

    python bench/abuse.py [--seconds 15] [--repeats 2] [--baseline-src PATH]

A real ``ltxserve serve`` (SQLite, tiny random-weight model: it outputs noise) is started with
its default limits. At the end of each round, ``--cancels`` 100-step tasks are cancelled a few
steps in: the time from sending ``taskCancel`` to the ``taskCancelled`` push, also in steps.
A polite client, authenticated, pings it over a WebSocket and over REST
(keep-alive) every 50 ms: first alone, then while attackers flood it without any API key:

- two processes each POST ``[{},{},...]`` bodies of 20 MB to ``/v1`` in a loop (no key);
- two processes each open WebSockets and send one 80 MB text frame before authenticating.

Printed per phase: ping p50/p99 (ms) on both transports, requests that failed, and the server's
RSS (start, peak, growth). Targets: flood p99 < 100 ms, RSS growth < 200 MB.
``--baseline-src`` runs the same rounds against another source tree (e.g. a checkout of the
commit before the hardening: ``git worktree add /tmp/before <rev>`` then ``/tmp/before/src``),
interleaved with this one, round by round.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.security.server import Server, running_server  # noqa: E402

MB = 1024 * 1024
PING = [{"taskType": "ping", "ping": True}]


def body_flood(port: int, source: str, stop: Any, counter: Any) -> None:
    """POST 20 MB of ``[{},{},...]`` without a key, again and again."""
    body = b"[" + b"{}," * (20 * MB // 3 - 1) + b"{}]"
    head = (
        f"POST /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    while not stop.is_set():
        try:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=30, source_address=(source, 0)
            ) as sock:
                with contextlib.suppress(OSError):  # refused mid-body: the point
                    sock.sendall(head + body)
                while sock.recv(65536):
                    pass
        except OSError:
            time.sleep(0.01)
        with counter.get_lock():
            counter.value += 1


def frame_flood(port: int, source: str, stop: Any, counter: Any) -> None:
    """Open a WebSocket and send one 80 MB frame before authenticating, again and again.

    The frame is built once, with a zero mask key (valid: masking is then the identity), so the
    attacker spends no CPU per frame; on this shared machine that CPU would otherwise be taken
    from the server and show up as its latency.
    """
    payload = json.dumps([{"taskType": "ping", "ping": True, "pad": "x" * (80 * MB - 64)}]).encode()
    frame = b"\x81\xff" + struct.pack("!Q", len(payload)) + b"\x00\x00\x00\x00" + payload
    upgrade = (
        b"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    while not stop.is_set():
        try:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=30, source_address=(source, 0)
            ) as sock:
                sock.sendall(upgrade)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed during the handshake")
                    head += chunk
                with contextlib.suppress(OSError):  # closed mid-frame: the point
                    sock.sendall(frame)
                while sock.recv(65536):
                    pass
        except OSError:
            time.sleep(0.01)
        with counter.get_lock():
            counter.value += 1


def pinger(server: Server, seconds: float, out: dict[str, list[float]], failures: list[str]) -> None:
    """Authenticated WebSocket pings and REST pings, one every 50 ms each, for ``seconds``."""
    ws = server.authed_ws(source="127.0.1.250")
    rest = httpx.Client(
        base_url=server.url,
        transport=httpx.HTTPTransport(local_address="127.0.1.251"),
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=30,
    )
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            ws.send(json.dumps(PING))
            ws.recv(timeout=30)
            out["ws"].append(time.perf_counter() - t0)
        except Exception as exc:
            failures.append(f"ws: {exc!r}")
            ws = server.authed_ws(source="127.0.1.250")
        t0 = time.perf_counter()
        try:
            reply = rest.post("/v1", json=PING)
            if reply.status_code == 200:
                out["rest"].append(time.perf_counter() - t0)
            else:
                failures.append(f"rest: HTTP {reply.status_code}")
        except Exception as exc:
            failures.append(f"rest: {exc!r}")
        time.sleep(0.05)
    ws.close()
    rest.close()


def phase(server: Server, seconds: float, flood: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    counter = ctx.Value("i", 0)
    attackers = []
    if flood:
        for i, target in enumerate((body_flood, body_flood, frame_flood, frame_flood)):
            p = ctx.Process(
                target=target, args=(server.port, f"127.0.2.{i + 10}", stop, counter), daemon=True
            )
            p.start()
            attackers.append(p)
        time.sleep(1.0)  # attackers running before the clock starts
    proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
    rss_start = proc.memory_info().rss
    peak = rss_start
    samples: dict[str, list[float]] = {"ws": [], "rest": []}
    failures: list[str] = []
    t = threading.Thread(target=pinger, args=(server, seconds, samples, failures))
    t.start()
    while t.is_alive():
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.1)
    stop.set()
    for p in attackers:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return {
        "ws": samples["ws"],
        "rest": samples["rest"],
        "failures": failures,
        "attacks": counter.value,
        "rss_start": rss_start,
        "rss_peak": peak,
    }


def cancel_latency(server: Server, repeats: int) -> list[tuple[float, float]]:
    """(cancel -> taskCancelled push, median step time) in seconds, for 100-step tasks cancelled
    once they have made progress."""
    from tests.security.server import video_task

    out = []
    ws = server.authed_ws(source="127.0.1.249")
    for _ in range(repeats):
        task = video_task(steps=100, width=256, height=256)
        ws.send(json.dumps([task]))
        steps: list[float] = []
        while len(steps) < 5:  # a few steps in: running for sure, and a step time to compare with
            item = json.loads(ws.recv(timeout=300)).get("data", [{}])[0]
            if item.get("status") == "processing" and item.get("progress", 0) > 0:
                steps.append(time.perf_counter())
        t0 = time.perf_counter()
        ws.send(json.dumps([{"taskType": "taskCancel", "taskUUID": task["taskUUID"]}]))
        while True:
            message = json.loads(ws.recv(timeout=300))
            if any(e.get("taskUUID") == task["taskUUID"] for e in message.get("errors", [])):
                codes = [e["code"] for e in message["errors"]]
                assert codes == ["taskCancelled"], message
                break
        step = statistics.median(b - a for a, b in itertools.pairwise(steps))
        out.append((time.perf_counter() - t0, step))
    ws.close()
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_round(
    label: str, src: Path | None, model: Path, seconds: float, cancel_repeats: int = 0
) -> dict[str, Any]:
    overrides = {"PYTHONPATH": str(src)} if src else {}
    with (
        tempfile.TemporaryDirectory(prefix="ltx-abuse-") as tmp,
        running_server(Path(tmp), model, fast=False, **overrides) as server,
    ):
        base = phase(server, seconds / 2, flood=False)
        flood = phase(server, seconds, flood=True)
        cancels = cancel_latency(server, cancel_repeats) if cancel_repeats else []
    return {"label": label, "baseline": base, "flood": flood, "cancel": cancels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="flood phase length (baseline: half)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-src", type=Path, default=None, help="another src/ tree to compare")
    parser.add_argument("--cancels", type=int, default=3, help="cancel-latency samples per round (this tree)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="ltx-abuse-model-") as mdir:
        model = Path(mdir) / "tiny"
        subprocess.run([sys.executable, "-m", "ltxserve.cli", "tiny-model", str(model)], check=True)
        rounds = []
        for i in range(args.repeats):
            variants = [("this tree", None)]
            if args.baseline_src:
                variants.append(("baseline", args.baseline_src))
            if i % 2:
                variants.reverse()
            for label, src in variants:
                result = run_round(label, src, model, args.seconds, args.cancels if src is None else 0)
                rounds.append(result)
                report([result])
    print("\n== all rounds ==")
    report(rounds)


def report(rounds: list[dict[str, Any]]) -> None:
    print(
        f"{'variant':<10} {'phase':<8} {'ws p50':>7} {'ws p99':>7} {'rest p50':>8} {'rest p99':>8} "
        f"{'fails':>5} {'attacks':>7} {'rss MB':>7} {'growth':>7}"
    )
    for r in rounds:
        for name in ("baseline", "flood"):
            p = r[name]
            growth = (p["rss_peak"] - p["rss_start"]) / MB
            print(
                f"{r['label']:<10} {name:<8} {pct(p['ws'], 0.5):7.1f} {pct(p['ws'], 0.99):7.1f} "
                f"{pct(p['rest'], 0.5):8.1f} {pct(p['rest'], 0.99):8.1f} {len(p['failures']):5d} "
                f"{p['attacks']:7d} {p['rss_start'] / MB:7.0f} {growth:7.0f}"
            )
    cancels = [c for r in rounds for c in r.get("cancel", [])]
    if cancels:
        latency = [1000 * c[0] for c in cancels]
        in_steps = [c[0] / c[1] for c in cancels]
        print(
            f"cancel -> taskCancelled push: {min(latency):.0f}-{max(latency):.0f} ms "
            f"(median {statistics.median(latency):.0f} ms; {min(in_steps):.1f}-{max(in_steps):.1f} steps "
            f"of {1000 * statistics.median(c[1] for c in cancels):.0f} ms), n={len(cancels)}"
        )
    floods = [r["flood"] for r in rounds if r["label"] == "this tree"]
    if floods:
        p99 = [pct(f["ws"] + f["rest"], 0.99) for f in floods]
        growth = [(f["rss_peak"] - f["rss_start"]) / MB for f in floods]
        print(
            f"this tree under flood: ping p99 {min(p99):.1f}-{max(p99):.1f} ms (target < 100), RSS growth "
            f"{min(growth):.0f}-{max(growth):.0f} MB (target < 200); "
            f"median p99 {statistics.median(p99):.1f} ms"
        )


if __name__ == "__main__":
    main()
