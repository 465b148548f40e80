"""Benchmark ``ltxserve.media.encode_video`` against the ffmpeg binary with the same settings.

Run: ``python bench/media.py [--pairs 5] [--frames 121] [--width 768] [--height 512]``.

Both sides get the same RGB frames and audio and the same ``EncoderPlan`` (codec, preset/CRF,
pix_fmt, BT.709 conversion and tags, threads, audio codec/bitrate/rate, faststart); ffmpeg
reads the frames as rawvideo from a pipe and the audio from a float WAV written beforehand.
Interleaved pairs (``bench/method.py``): min/median/max of each and ours/ffmpeg per pair with its
spread and verdict (the target: at most ~11% slower than the binary, ratio <= 1.11).

``--presets`` instead weighs x264's speed presets (``Settings.x264_preset``) at the same CRF: the
encode's CPU seconds (this process, every thread), the file size and the PSNR, each against
``veryfast``, on three contents: uniform noise (what the tiny random-weight models output; every
coefficient costs bits), a panned photo and moving gradients with mild grain (closer to video).
``lean`` is the small-machine default (``media.encode.X264_LEAN``).
"""

from __future__ import annotations

import argparse
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import method
import numpy as np

from ltxserve.media import VideoFormat, encode_video, encoder_plan, probe

FPS = 24
SAMPLE_RATE = 24_000


def make_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Moving colour gradients plus mild noise: motion for the encoder, not pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        r = 127 + 100 * np.sin((x + 4 * i) / 37.0)
        g = 127 + 100 * np.sin((y - 3 * i) / 23.0)
        b = 127 + 100 * np.sin((x + y + 5 * i) / 51.0)
        noise = rng.normal(0, 3, (height, width, 1))
        out[i] = np.clip(np.stack([r, g, b], axis=-1) + noise, 0, 255).astype(np.uint8)
    return out


def make_audio(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3300 * t)
    right = 0.4 * np.sin(2 * np.pi * 330 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    return np.stack([left, right]).astype(np.float32)


def write_float_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """(channels, samples) float32 -> IEEE-float WAV (the stdlib ``wave`` writes only PCM ints)."""
    channels = audio.shape[0]
    data = np.ascontiguousarray(audio.T, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    with path.open("wb") as fh:
        fh.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE")
        fh.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        fh.write(b"data" + struct.pack("<I", len(data)) + data)


def ffmpeg_command(
    fmt: VideoFormat, quality: int, width: int, height: int, wav: Path, out: Path
) -> list[str]:
    plan = encoder_plan(fmt, quality, SAMPLE_RATE)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-nostdin"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(FPS)]
    cmd += ["-i", "pipe:0", "-i", str(wav), "-map", "0:v", "-map", "1:a"]
    # Same conversion as ours: swscale bilinear, BT.709 matrix, limited range, BT.709 tags.
    cmd += ["-vf", f"scale=out_color_matrix=bt709:out_range=tv:flags=bilinear,format={plan.pix_fmt}"]
    cmd += ["-c:v", plan.video_codec, "-threads:v", "0"]
    for key, value in plan.video_options.items():
        cmd += [f"-{key}:v", value]
    cmd += ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    cmd += ["-color_range", "tv", "-fps_mode", "passthrough"]
    cmd += ["-c:a", plan.audio_codec, "-b:a", str(plan.audio_bitrate), "-ar", str(plan.audio_rate)]
    for key, value in plan.muxer_options.items():
        cmd += [f"-{key}", value]
    cmd += ["-f", plan.muxer, str(out)]
    return cmd


def run_ffmpeg(cmd: list[str], frames: np.ndarray) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(memoryview(np.ascontiguousarray(frames)).cast("B"))
    finally:
        proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}")
    return time.perf_counter() - started


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread (the encoder's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_pan(num_frames: int, height: int, width: int) -> np.ndarray:
    """A photo (matplotlib's bundled ``grace_hopper.jpg``, upscaled 2x) panned diagonally: the
    smooth detail and motion of camera footage, which synthetic gradients lack."""
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:  # type: ignore[no-untyped-call]
        photo = Image.open(f).convert("RGB")
    big = np.asarray(photo.resize((2 * photo.width, 2 * photo.height), Image.Resampling.BICUBIC))
    big = np.pad(
        big,
        (
            (0, max(0, height + 2 * num_frames - big.shape[0])),
            (0, max(0, width + 3 * num_frames - big.shape[1])),
            (0, 0),
        ),
        mode="reflect",
    )
    return np.stack([big[2 * i : 2 * i + height, 3 * i : 3 * i + width] for i in range(num_frames)])


def psnr(path: Path, frames: np.ndarray) -> float:
    """PSNR (dB) of the decoded file against the RGB frames it was made from."""
    import av

    with av.open(str(path)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    mse = float(np.mean((decoded.astype(np.float32) - frames[: len(decoded)].astype(np.float32)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


def bench_presets(args: argparse.Namespace, tmpdir: Path) -> None:
    """x264 presets at the same CRF: CPU seconds, bytes and PSNR, each against ``veryfast``."""
    rng = np.random.default_rng(1)
    contents = {
        "noise (the tiny models' output)": rng.integers(
            0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8
        ),
        "panned photo": make_pan(args.frames, args.height, args.width),
        "gradients + grain": make_frames(args.frames, args.height, args.width),
    }
    audio = make_audio(args.frames / FPS)
    for content, frames in contents.items():
        sizes: dict[str, int] = {}

        def run(preset: str, frames: np.ndarray = frames, sizes: dict[str, int] = sizes) -> float:
            path = tmpdir / f"{preset}.mp4"
            before = cpu_seconds()
            encode_video(path, frames, FPS, audio, SAMPLE_RATE, VideoFormat.MP4, args.quality, preset)
            sizes[preset] = path.stat().st_size
            return cpu_seconds() - before

        print(f"\n[{content}] MP4, quality {args.quality}: encode CPU seconds, A = veryfast")
        for preset in ("lean", "superfast", "ultrafast"):
            cmp = method.compare(
                ("veryfast", lambda: run("veryfast")), (preset, lambda p=preset: run(p)), pairs=args.pairs
            )
            print(cmp.report())
            ratio = sizes[preset] / sizes["veryfast"]
            quality = {p: psnr(tmpdir / f"{p}.mp4", frames) for p in ("veryfast", preset)}
            print(
                f"  bytes: veryfast {sizes['veryfast']}, {preset} {sizes[preset]} ({ratio:.2f}x); "
                f"PSNR veryfast {quality['veryfast']:.2f} dB, {preset} {quality[preset]:.2f} dB"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=method.DEFAULT_PAIRS)
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument(
        "--formats", nargs="+", default=["MP4", "WEBM"], choices=[f.value for f in VideoFormat]
    )
    parser.add_argument("--presets", action="store_true", help="x264 presets (CPU, bytes) instead")
    args = parser.parse_args()
    if args.presets:
        method.header(None, "x264 threads 0 = auto, as in service; CPU time counts every thread")
        with tempfile.TemporaryDirectory(prefix="ltxserve-bench-") as tmp:
            bench_presets(args, Path(tmp))
        return 0
    method.header(None, "both encoders use every core (threads 0 = auto), as in service")

    frames = make_frames(args.frames, args.height, args.width)
    audio = make_audio(5.0)
    print(
        f"{args.frames} frames {args.width}x{args.height} @ {FPS} fps, {audio.shape[1] / SAMPLE_RATE:.1f} s "
        f"stereo @ {SAMPLE_RATE} Hz, quality {args.quality}; A = ffmpeg binary, B = ours"
    )
    with tempfile.TemporaryDirectory(prefix="ltxserve-bench-") as tmp:
        tmpdir = Path(tmp)
        wav = tmpdir / "audio.wav"
        write_float_wav(wav, audio, SAMPLE_RATE)
        for name in args.formats:
            fmt = VideoFormat(name)
            ours_path = tmpdir / f"ours{fmt.extension}"
            ref_path = tmpdir / f"ffmpeg{fmt.extension}"
            cmd = ffmpeg_command(fmt, args.quality, args.width, args.height, wav, ref_path)

            def ours(fmt: VideoFormat = fmt, path: Path = ours_path) -> float:
                return encode_video(path, frames, FPS, audio, SAMPLE_RATE, fmt, args.quality).seconds

            def ref(cmd: list[str] = cmd) -> float:
                return run_ffmpeg(cmd, frames)

            cmp = method.compare(("ffmpeg binary", ref), ("ltxserve (PyAV)", ours), pairs=args.pairs)
            a, b = probe(ours_path), probe(ref_path)
            if a.frames != args.frames or b.frames != args.frames:
                raise SystemExit(f"{fmt}: frame count mismatch (ours {a.frames}, ffmpeg {b.frames})")
            print(f"\n[{fmt.value}] bytes: ours {a.size}, ffmpeg {b.size}")
            print(cmp.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
