"""Latents -> uint8 frames and audio, whole or in time chunks streamed into the output.

The pipelines run with ``output_type="latent"`` and the engine decodes here, so memory is bounded
by what the capacity check planned rather than by clip length:

* **whole**: one ``vae.decode`` of the clip, as ``LTX2Pipeline`` does; peak = the decoder's last
  stage for every frame plus the float32 video and its copies.
* **chunked**: latent frames ``[s, s + chunk)`` are decoded together with ``context`` latent frames
  on each side, the context's frames are dropped, and the kept frames go straight into a
  preallocated uint8 array. The LTX-2 decoder is non-causal in time, so a chunk equals the whole
  decode exactly once ``context`` reaches its temporal receptive field (15 latent frames for
  LTX-2.0's layout, ~8 for the tiny model: measured by perturbing one latent frame); below it,
  frames near a chunk boundary differ by what the farther latents would have added, which falls
  off with distance. Large frames are further split by the VAE's own spatial tiles (diffusers'
  ``tiled_decode``: 512-pixel tiles blended over 64 pixels), as Lightricks' pipelines tile.

Frame mapping: decoding latent frames ``[a, b)`` yields pixel frames ``8a .. 8(b - 1)`` of the
whole clip (the first latent of any chunk decodes to one frame, the clip's first latent to frame
0 and every later latent ``j`` to frames ``8j - 7 .. 8j``).

Audio is decoded whole: the audio VAE is causal and small, and LTX-2.0's vocoder peaks at its last
stage (32 channels x 24,000 samples/s x 4 B ~ 61 MB for 20 s), far below the video decode.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: ``sink(first, frames)``: pixel frames ``first ..`` of the clip, (B, n, H, W, 3) uint8, handed over
#: in order as soon as they exist (a view the decoder never writes again).
FrameSink = Callable[[int, np.ndarray], None]

#: Frames converted (and handed to the sink) at a time after a decode: the encoder starts on the
#: first group while the next ones are converted.
CONVERT_GROUP = 8


def to_uint8(video: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Float frames in [0, 1] -> uint8, rounding to nearest (as the engine always has).

    ``inplace`` reuses ``video`` for the intermediate steps: no float temporaries of clip size.
    """
    work = video if inplace else video.copy()
    np.clip(work, 0.0, 1.0, out=work)
    work *= 255.0
    work += 0.5
    return work.astype(np.uint8)


def frames_uint8(video: Any) -> np.ndarray:
    """Decoder output (B, 3, F, H, W) in [-1, 1] -> uint8 (B, F, H, W, 3).

    Bit-identical to diffusers' ``postprocess_video(output_type="np")`` followed by ``to_uint8``
    (the same float operations in the same order: denormalize and clamp in the decoder's dtype,
    then float32 x 255 + 0.5, truncated), without its per-frame loop and clip-sized float copies;
    on a GPU only uint8 crosses to the host. ``video`` may be overwritten.
    """
    b, _c, f, h, w = video.shape
    out = np.empty((b, f, h, w, 3), dtype=np.uint8)
    _emit(video, out, 0, 0, f, None)
    return out


def _uint8_frames(video: Any) -> Any:
    """``frames_uint8`` as a (B, F, H, W, 3) view of a uint8 tensor on the decoder's device."""
    import torch

    video.mul_(0.5).add_(0.5).clamp_(0, 1)
    work = video if video.dtype == torch.float32 else video.float()
    work.mul_(255.0).add_(0.5)
    return work.to(torch.uint8).permute(0, 2, 3, 4, 1)


#: Rows of one frame converted at a time on the CPU: the float intermediates of a block
#: (3 x 128 rows x 768 x 4 B ~ 1.2 MB) stay in cache, so only the decoder's output is read from
#: memory. Measured on 2 cores (97 frames at 768x512, one thread): 0.23 CPU-s, against 0.58 for
#: torch's whole-group ops (each a pass over memory; its float -> uint8 cast and channels-last
#: copy are also ~3x slower than numpy's there).
BLOCK_ROWS = 128


def _uint8_cpu(video: np.ndarray, out: np.ndarray) -> None:
    """``_uint8_frames`` for float32 frames on the CPU: (B, 3, n, H, W) -> ``out`` (B, n, H, W, 3),
    the same float32 operations in the same order, a block of rows at a time, on this thread."""
    b, _c, n, h, w = video.shape
    rows = min(BLOCK_ROWS, h)
    buf = np.empty((3, rows, w), dtype=np.float32)
    planes = np.empty((3, rows, w), dtype=np.uint8)
    for i in range(b):
        for f in range(n):
            for r in range(0, h, rows):
                k = min(rows, h - r)
                work, u8 = buf[:, :k], planes[:, :k]
                np.multiply(video[i, :, f, r : r + k], 0.5, out=work)
                work += 0.5
                np.clip(work, 0.0, 1.0, out=work)
                work *= 255.0
                work += 0.5
                np.copyto(u8, work, casting="unsafe")  # truncation, as torch's cast
                dst = out[i, f, r : r + k]
                for c in range(3):  # three strided copies: ~3x faster than one transposing copy
                    dst[..., c] = u8[c]


def _vae_decode(pipe: Any, latents: Any, tiled: bool) -> Any:
    """One ``vae.decode`` of ``latents`` (B, C, F, h, w) -> (B, 3, F', H, W) in [-1, 1]."""
    import torch

    vae = pipe.vae
    vae.use_framewise_decoding = False  # time is chunked here, never inside the VAE
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    temb = None
    if vae.config.timestep_conditioning:  # decode_timestep 0: no decode noise (the pipeline default)
        temb = torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
    with torch.no_grad():
        return vae.decode(latents.to(vae.dtype), temb, return_dict=False)[0]


def _decode_latents(pipe: Any, latents: Any, tiled: bool, dtype: type[np.generic]) -> np.ndarray:
    """``vae.decode`` + postprocessing of ``latents`` (B, C, F, h, w) -> (B, F', H, W, 3)."""
    video = _vae_decode(pipe, latents, tiled)
    if dtype == np.uint8:
        return frames_uint8(video)
    out = np.asarray(pipe.video_processor.postprocess_video(video, output_type="np"))
    return out.astype(dtype, copy=False)


@contextlib.contextmanager
def _one_thread_beside_encoder(video: Any, sink: FrameSink | None) -> Iterator[None]:
    """Convert on one CPU thread while a streamed encode runs beside it (torch's path on the CPU:
    decoders in a dtype other than float32).

    The conversion is memory-bound and the encoder's threads take the other cores: with torch's
    OpenMP team on every core, its threads spin at each op's barrier whenever the encoder holds a
    core. Measured on 2 cores (96 frames at 768x512 fed to x264 ``lean``): 1.06 CPU-s and 0.62 s
    for conversion + encode on one thread, against 1.35 CPU-s and 0.75 s on two. The count is
    process-wide: nothing else runs torch on the CPU while a worker decodes.
    """
    import torch

    if sink is None or video.device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _emit(video: Any, out: np.ndarray, src: int, dst: int, n: int, sink: FrameSink | None) -> None:
    """Convert decoded frames ``src .. src + n`` into ``out[:, dst .. dst + n]`` in groups, each
    handed to ``sink`` as soon as it is written."""
    import torch

    frames = video.numpy() if video.device.type == "cpu" and video.dtype == torch.float32 else None
    with contextlib.nullcontext() if frames is not None else _one_thread_beside_encoder(video, sink):
        for g in range(0, n, CONVERT_GROUP):
            m = min(CONVERT_GROUP, n - g)
            target = out[:, dst + g : dst + g + m]
            if frames is not None:  # numpy, on this thread: the encoder takes the other cores
                _uint8_cpu(frames[:, :, src + g : src + g + m], target)
            else:  # on a GPU the conversion runs there and only uint8 crosses to the host
                torch.from_numpy(target).copy_(_uint8_frames(video[:, :, src + g : src + g + m]))
            if sink is not None:
                sink(dst + g, target)


def decode_video(
    pipe: Any,
    latents: Any,
    *,
    chunked: bool,
    chunk_frames: int = 8,
    context_frames: int = 4,
    spatial_tiles: bool = False,
    keep_frames: int | None = None,
    dtype: type[np.generic] = np.uint8,
    sink: FrameSink | None = None,
    vae_seconds: list[float] | None = None,
) -> np.ndarray:
    """Denormalized video latents (B, C, F, h, w) -> frames (B, keep_frames, H, W, 3).

    ``keep_frames`` drops the surplus of the 8k+1 grid; chunks wholly past it are not decoded.
    ``dtype`` float32 gives the postprocessed [0, 1] floats (for exactness checks). ``sink``
    receives the uint8 frames in order as they are converted (a streamed encode starts on them);
    the frames are the same with or without it. ``vae_seconds`` collects the time of each
    ``vae.decode`` call (the model's part of the decode; the rest is conversion).
    """
    total = (latents.shape[2] - 1) * pipe.vae_temporal_compression_ratio + 1
    keep = total if keep_frames is None else min(keep_frames, total)
    if dtype != np.uint8 and sink is not None:
        raise ValueError("a frame sink takes uint8 frames")
    if dtype != np.uint8 and not chunked:
        return _decode_latents(pipe, latents, spatial_tiles, dtype)[:, :keep]
    if not chunked:
        t0 = time.perf_counter()
        video = _vae_decode(pipe, latents, spatial_tiles)
        if vae_seconds is not None:
            vae_seconds.append(time.perf_counter() - t0)
        b, _c, _f, h, w = video.shape
        whole = np.empty((b, keep, h, w, 3), dtype=np.uint8)
        _emit(video, whole, 0, 0, keep, sink)
        return whole
    if chunk_frames < 1 or context_frames < 1:
        raise ValueError("chunked decode needs chunk_frames >= 1 and context_frames >= 1")
    ratio = pipe.vae_temporal_compression_ratio
    n_latent = latents.shape[2]
    out: np.ndarray | None = None
    for start in range(0, n_latent, chunk_frames):
        end = min(n_latent, start + chunk_frames)  # latents whose frames this chunk keeps
        first = 0 if start == 0 else ratio * (start - 1) + 1  # their pixel frames, whole-clip index
        last = ratio * (end - 1)
        if first >= keep:
            break
        a, b = max(0, start - context_frames), min(n_latent, end + context_frames)
        t0 = time.perf_counter()
        video = _vae_decode(pipe, latents[:, :, a:b], spatial_tiles)
        if vae_seconds is not None:
            vae_seconds.append(time.perf_counter() - t0)
        if out is None:
            out = np.empty((video.shape[0], keep, video.shape[3], video.shape[4], 3), dtype=dtype)
        stop = min(last + 1, keep)
        if dtype == np.uint8:
            _emit(video, out, first - ratio * a, first, stop - first, sink)
        else:  # exactness checks: diffusers' float postprocessing
            frames = np.asarray(pipe.video_processor.postprocess_video(video, output_type="np"))
            out[:, first:stop] = frames[:, first - ratio * a : stop - ratio * a]
        del video
    assert out is not None
    return out


def decode_audio(pipe: Any, audio_latents: Any) -> np.ndarray:
    """Denormalized audio latents (B, C, L, M) -> float32 waveforms (B, channels, samples)."""
    import torch

    with torch.no_grad():
        mel = pipe.audio_vae.decode(audio_latents.to(pipe.audio_vae.dtype), return_dict=False)[0]
        audio = pipe.vocoder(mel)
    return np.asarray(audio.float().cpu().numpy(), dtype=np.float32)
