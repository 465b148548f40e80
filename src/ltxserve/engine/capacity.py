"""Capacity check: refuse a job that cannot fit *before* any work, naming the limiting parameter.

The estimate is deliberately simple and conservative, built from the model config:

* **tokens**: the transformer's video sequence is ``latent_frames x (H/32) x (W/32)``; its audio
  sequence is 25 latents per second. Jobs above ``max_video_tokens`` are refused outright.
* **denoise peak**: ``rows x tokens x width x bytes x TRANSFORMER_FACTOR`` where ``rows`` is the
  batch (results, doubled under classifier-free guidance) and ``width`` the transformer's inner
  dimension; attention itself is memory-efficient (SDPA) and not quadratic here. Two-stage jobs
  count the larger of stage 1 (a quarter of the tokens, with the preset's guidance) and the
  full-size refine stage (no guidance).
* **upsample peak** (two-stage): the latent upsampler's residual blocks after the x2 upsampling,
  ``UPSAMPLE_FACTOR`` tensors of ``latent frames x (H/32) x (W/32) x mid_channels``.
* **whole decode**: the video VAE's last stage runs at ``(H/p) x (W/p)`` with ``c`` channels for
  every generated frame (``p`` = VAE patch size), plus the float32 output frames and their copies
  (``DECODE_OUTPUT_FACTOR``) and the uint8 result.
* **chunked decode** (``engine.decode``): the same for one chunk of ``chunk + 2 x context`` latent
  frames (its last stage bounded by the VAE's 512-pixel spatial tiles), plus the uint8 result of
  the whole clip, the only part that grows with duration.

The factors were measured with peak RSS on CPU (tiny and mid random-weight models,
``bench/memory.py`` prints measured against estimated) and rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ltxserve.engine.planning import FramePlan

GiB = 1024**3
TRANSFORMER_FACTOR = 24  # live activations per token and channel during one transformer pass
DECODE_STAGE_FACTOR = 6  # copies of the last decoder stage alive at once (conv in/out, norm, residual)
DECODE_OUTPUT_FACTOR = 4  # float32 frames: VAE output, denormalize + clamp temporaries, numpy stack
UPSAMPLE_FACTOR = 4  # latent upsampler: block input, conv out, norm/activation, residual sum
AUDIO_TOKENS_PER_SECOND = 25  # 16 kHz mel, hop 160, 4x temporal compression


class CapacityError(ValueError):
    """A job that cannot run on this machine; ``parameter`` names what to lower."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(message)


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of the loaded model."""

    inner_dim: int  # transformer video width (heads x head dim)
    audio_inner_dim: int
    spatial_ratio: int  # 32
    vae_patch: int  # 4 on LTX-2
    vae_last_channels: int  # decoder_block_out_channels[0]
    act_bytes: int  # 2 for bf16/fp16, 4 for fp32
    temporal_ratio: int = 8
    upsampler_channels: int = 0  # mid_channels of the latent upsampler (0: none loaded)


@dataclass(frozen=True)
class Chunking:
    """How a chunked decode runs (``engine.decode``): latent frames per chunk, context latent
    frames decoded on each side, and the VAE's spatial tile (diffusers' default 512 pixels)."""

    chunk_latents: int = 16
    context_latents: int = 4
    tile_pixels: int = 512


@dataclass(frozen=True)
class JobEstimate:
    video_tokens: int
    audio_tokens: int
    denoise_bytes: int
    decode_bytes: int
    tiled_decode_bytes: int  # chunked decode
    upsample_bytes: int = 0

    def peak(self, tiled: bool) -> int:
        decode = self.tiled_decode_bytes if tiled else self.decode_bytes
        return max(self.denoise_bytes, self.upsample_bytes, decode)


def estimate(
    shape: ModelShape,
    plan: FramePlan,
    width: int,
    height: int,
    batch: int,
    cfg: bool,
    chunking: Chunking | None = None,
    two_stage: bool = False,
    split: tuple[int, int] = (1, 1),
) -> JobEstimate:
    """``split``: (guidance groups, sequence ranks) of a multi-rank job (``engine.parallel``): each
    rank holds its share of the batch rows and of the video tokens during denoising."""
    chunking = chunking or Chunking()
    lat_h, lat_w = height // shape.spatial_ratio, width // shape.spatial_ratio
    video_tokens = plan.latent_frames * lat_h * lat_w
    audio_tokens = round(plan.generated_frames / plan.fps * AUDIO_TOKENS_PER_SECOND) + 1
    rows = batch * (2 if cfg else 1)

    def denoise_pass(rows: int, video_tokens: int) -> int:
        rows = rows // split[0] if rows % split[0] == 0 else rows  # an uneven batch runs whole
        video_tokens = -(-video_tokens // split[1])
        tokens = video_tokens * shape.inner_dim + audio_tokens * shape.audio_inner_dim
        return rows * tokens * shape.act_bytes * TRANSFORMER_FACTOR

    denoise = denoise_pass(rows, video_tokens)
    upsample = 0
    if two_stage:
        stage_one = denoise_pass(rows, plan.latent_frames * (lat_h // 2) * (lat_w // 2))
        denoise = max(stage_one, denoise_pass(batch, video_tokens))
        upsample = batch * video_tokens * shape.upsampler_channels * shape.act_bytes * UPSAMPLE_FACTOR
    result = batch * plan.requested_frames * height * width * 3  # the uint8 frames handed back

    def decode(frames: int, h: int, w: int, out_frames: int) -> int:
        stage = frames * (h // shape.vae_patch) * (w // shape.vae_patch) * shape.vae_last_channels
        output = out_frames * height * width * 3 * 4 * DECODE_OUTPUT_FACTOR
        return batch * (stage * shape.act_bytes * DECODE_STAGE_FACTOR + output) + result

    frames = plan.generated_frames
    untiled = decode(frames, height, width, frames)
    span = min(plan.latent_frames, chunking.chunk_latents + 2 * chunking.context_latents)
    chunk_frames = min(frames, (span - 1) * shape.temporal_ratio + 1)
    tile = chunking.tile_pixels
    tiled = decode(chunk_frames, min(height, tile), min(width, tile), chunk_frames)
    return JobEstimate(video_tokens, audio_tokens, denoise, untiled, tiled, upsample)


def limiting_parameter(plan: FramePlan, width: int, height: int) -> str:
    """The parameter furthest above a typical job (5 s at 24 fps, 768x512): the one to lower."""
    frame_ratio = plan.requested_frames / 121
    pixel_ratio = (width * height) / (768 * 512)
    if pixel_ratio >= frame_ratio:
        return "width" if width >= height else "height"
    return "fps" if plan.fps > 30 else "duration"


def describe(nbytes: float) -> str:
    return f"{nbytes / GiB:.1f} GiB"
