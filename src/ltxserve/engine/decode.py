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

from typing import Any

import numpy as np


def to_uint8(video: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Float frames in [0, 1] -> uint8, rounding to nearest (as the engine always has).

    ``inplace`` reuses ``video`` for the intermediate steps: no float temporaries of clip size.
    """
    work = video if inplace else video.copy()
    np.clip(work, 0.0, 1.0, out=work)
    work *= 255.0
    work += 0.5
    return work.astype(np.uint8)


def _decode_latents(pipe: Any, latents: Any, tiled: bool, dtype: type[np.generic]) -> np.ndarray:
    """One ``vae.decode`` + postprocessing of ``latents`` (B, C, F, h, w) -> (B, F', H, W, 3)."""
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
        video = vae.decode(latents.to(vae.dtype), temb, return_dict=False)[0]
        out = pipe.video_processor.postprocess_video(video, output_type="np")
    del video
    frames = np.asarray(out)
    return to_uint8(frames, inplace=True) if dtype == np.uint8 else frames.astype(dtype, copy=False)


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
) -> np.ndarray:
    """Denormalized video latents (B, C, F, h, w) -> frames (B, keep_frames, H, W, 3).

    ``keep_frames`` drops the surplus of the 8k+1 grid; chunks wholly past it are not decoded.
    ``dtype`` float32 gives the postprocessed [0, 1] floats (for exactness checks).
    """
    total = (latents.shape[2] - 1) * pipe.vae_temporal_compression_ratio + 1
    keep = total if keep_frames is None else min(keep_frames, total)
    if not chunked:
        return _decode_latents(pipe, latents, spatial_tiles, dtype)[:, :keep]
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
        frames = _decode_latents(pipe, latents[:, :, a:b], spatial_tiles, dtype)
        piece = frames[:, first - ratio * a : last - ratio * a + 1]
        if out is None:
            out = np.empty((piece.shape[0], keep, *piece.shape[2:]), dtype=dtype)
        stop = min(last + 1, keep)
        out[:, first:stop] = piece[:, : stop - first]
        del frames, piece
    assert out is not None
    return out


def decode_audio(pipe: Any, audio_latents: Any) -> np.ndarray:
    """Denormalized audio latents (B, C, L, M) -> float32 waveforms (B, channels, samples)."""
    import torch

    with torch.no_grad():
        mel = pipe.audio_vae.decode(audio_latents.to(pipe.audio_vae.dtype), return_dict=False)[0]
        audio = pipe.vocoder(mel)
    return np.asarray(audio.float().cpu().numpy(), dtype=np.float32)
