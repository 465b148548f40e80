"""Benchmark the NSFW check: per-frame classifier cost and fast vs full on a 5 s clip.

Run: ``python bench/safety.py [--threads 1 2] [--min-seconds 1.5]``.

Prints, for this CPU:

1. model load (sha256 check + onnxruntime session), once;
2. preprocessing alone per frame at 512x320 and 1280x704: Pillow resize + crop with and
   without the reference JPEG round trip, and a bit-exact numpy port of Pillow's bilinear
   resampler (kept here only to show why ``preprocess_frames`` resizes with Pillow);
3. ``score_frames`` per frame, preprocessing included, for batch sizes 1, 8, 32;
4. ``check_video`` fast vs full on a 5 s, 25 fps clip (125 frames).

Cells read ``wall / CPU``: the best wall time of repeated runs after one warm-up, and the median
CPU time of the process (all threads). On a shared box wall time swings with other load; CPU
time is the steadier measure of what the check costs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import method
import numpy as np
from PIL import Image

from ltxserve.safety import NSFWChecker, check_video, model_file, preprocess_frames, verify_model

BILINEAR = Image.Resampling.BILINEAR
SIZES = [(512, 320), (1280, 704)]
BATCHES = [1, 8, 32]
CLIP_FPS = 25
CLIP_SECONDS = 5


def make_frames(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Colour gradients plus noise: content does not change the model's cost, only JPEG's a little."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [127 + 100 * np.sin(x / 37.0), 127 + 100 * np.sin(y / 23.0), 127 + 100 * np.sin((x + y) / 51.0)], -1
    )
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = np.clip(base + rng.normal(0, 8, (height, width, 1)), 0, 255)
    return out


def timed(fn: Callable[[], object], min_seconds: float, min_runs: int = 3) -> tuple[float, float]:
    """(best wall, median CPU) seconds per call of ``fn``; CPU time counts all threads."""
    fn()  # warm-up
    walls: list[float] = []
    cpus: list[float] = []
    start = time.perf_counter()
    while len(walls) < min_runs or time.perf_counter() - start < min_seconds:
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), statistics.median(cpus)


def cell(wall_cpu: tuple[float, float], scale: float, width: int) -> str:
    wall, cpu = wall_cpu
    return f"{wall * scale:.1f} / {cpu * scale:.1f}".rjust(width)


# --- the alternative we measured against: Pillow's bilinear resampler ported to numpy -----------
_BITS = 22  # Pillow's PRECISION_BITS for 8-bit images


def _taps(in_size: int, out_size: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the bilinear filter."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale
    ksize = math.ceil(support) * 2 + 1
    center = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    k = np.arange(ksize)
    pos = xmin[:, None] + k
    t = np.abs((pos - center[:, None] + 0.5) * (1.0 / filterscale))
    valid = k < count[:, None]
    w = np.where(valid & (t < 1.0), 1.0 - t, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    coef = np.trunc(0.5 + w * (1 << _BITS)).astype(np.int32)
    return np.where(valid, pos, xmin[:, None]), coef


def numpy_resize_crop(frames: np.ndarray, size: int = 256, crop: int = 224) -> np.ndarray:
    """Bit-exact numpy equivalent of Pillow ``resize((256, 256), BILINEAR).crop(centre 224)``."""
    n, h, w, c = frames.shape
    off = (size - crop) // 2
    xi, xk = _taps(w, size, off, off + crop)
    yi, yk = _taps(h, size, off, off + crop)
    r0, r1 = int(yi.min()), int(yi.max()) + 1
    cols = (xi[:, :, None] * c + np.arange(c)).transpose(1, 0, 2).reshape(xi.shape[1], crop * c)
    col_w = np.repeat(xk.T, c, axis=1)
    out = np.empty((n, crop, crop, c), np.uint8)
    for i in range(n):
        rows = frames[i, r0:r1].reshape(r1 - r0, w * c)
        acc = np.full((r1 - r0, crop * c), 1 << (_BITS - 1), np.int32)
        for k in range(cols.shape[0]):
            acc += np.take(rows, cols[k], axis=1) * col_w[k]
        tmp = np.clip(acc >> _BITS, 0, 255).astype(np.uint8)
        acc2 = np.full((crop, crop * c), 1 << (_BITS - 1), np.int32)
        for k in range(yi.shape[1]):
            acc2 += tmp[yi[:, k] - r0] * yk[:, k][:, None]
        out[i] = np.clip(acc2 >> _BITS, 0, 255).reshape(crop, crop, c)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-seconds", type=float, default=1.5)
    args = parser.parse_args()
    budget = args.min_seconds
    method.header(None, f"ONNX runtime threads per row: {args.threads} (no A/B ratios here: costs only)")

    t = time.perf_counter()
    verify_model(model_file())
    NSFWChecker().load()
    print(f"model load (sha256 + session): {(time.perf_counter() - t) * 1e3:.0f} ms\n")

    print("preprocessing only, ms/frame, batch of 32: best wall / CPU")
    print(f"{'frame':<9} {'pillow+jpeg':>14} {'pillow':>14} {'numpy port':>14}")
    for width, height in SIZES:
        frames = make_frames(32, width, height)
        box = (16, 16, 240, 240)
        ref = np.stack(
            [np.asarray(Image.fromarray(f).resize((256, 256), BILINEAR).crop(box)) for f in frames]
        )
        np.testing.assert_array_equal(numpy_resize_crop(frames), ref)  # the port really is exact
        row = [
            timed(partial(preprocess_frames, frames, jpeg_reencode=True), budget),
            timed(partial(preprocess_frames, frames, jpeg_reencode=False), budget),
            timed(partial(numpy_resize_crop, frames), budget),
        ]
        print(f"{width}x{height:<4} " + " ".join(cell(r, 1e3 / 32, 14) for r in row))

    print("\nscore_frames incl. preprocessing (JPEG round trip on), ms/frame: best wall / CPU")
    print(f"{'threads':<7} {'frame':<9} " + " ".join(f"batch {b}".rjust(14) for b in BATCHES))
    for threads in args.threads:
        for width, height in SIZES:
            frames = make_frames(max(BATCHES), width, height)
            cells = []
            for batch in BATCHES:
                checker = NSFWChecker(threads=threads, batch_size=batch)
                checker.load()
                cells.append(
                    cell(timed(partial(checker.score_frames, frames[:batch]), budget), 1e3 / batch, 14)
                )
            print(f"{threads:<7} {width}x{height:<4} " + " ".join(cells))

    n = CLIP_FPS * CLIP_SECONDS
    print(f"\ncheck_video on a {CLIP_SECONDS} s {CLIP_FPS} fps clip ({n} frames), threads 1, batch 8")
    print(f"{'frame':<9} {'mode':<5} {'frames':>6} {'seconds: wall / CPU':>24}")
    checker = NSFWChecker()
    checker.load()
    for width, height in SIZES:
        clip = make_frames(n, width, height)
        for mode in ("fast", "full"):
            bm = timed(partial(check_video, clip, CLIP_FPS, mode, checker, 0.8), budget)
            checked = check_video(clip, CLIP_FPS, mode, checker, 0.8).frames_checked
            print(f"{width}x{height:<4} {mode:<5} {checked:>6} " + f"{bm[0]:.2f} / {bm[1]:.2f}".rjust(24))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
