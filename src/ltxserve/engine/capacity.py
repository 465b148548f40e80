"""Capacity check: refuse a job that cannot fit *before* any work, naming the limiting parameter.

The estimate is deliberately simple and conservative, built from the model config:

* **tokens**: the transformer's video sequence is ``latent_frames x (H/32) x (W/32)``; its audio
  sequence is 25 latents per second. Jobs above ``max_video_tokens`` are refused outright.
* **denoise peak**: ``rows x tokens x width x bytes x TRANSFORMER_FACTOR`` where ``rows`` is the
  batch (results, doubled under classifier-free guidance) and ``width`` the transformer's inner
  dimension; attention itself is memory-efficient (SDPA) and not quadratic here.
* **decode peak**: the video VAE's last stage runs at ``(H/p) x (W/p)`` with ``c`` channels for
  every generated frame (``p`` = VAE patch size), plus the float32 output frames and their copies
  (``DECODE_OUTPUT_FACTOR``). Tiled decode bounds frames and pixels by the tile size.

The factors were measured on the tiny and mid random-weight models on CPU (peak RSS over
baseline; ``bench/engine.py --capacity`` prints measured against estimated) and are rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ltxserve.engine.planning import FramePlan

GiB = 1024**3
TRANSFORMER_FACTOR = 24  # live activations per token and channel during one transformer pass
DECODE_STAGE_FACTOR = 6  # copies of the last decoder stage alive at once (conv in/out, norm, residual)
DECODE_OUTPUT_FACTOR = 3  # float32 frames: VAE output, postprocessed copy, numpy copy
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


@dataclass(frozen=True)
class TileSize:
    height: int = 512
    width: int = 512
    frames: int = 16


@dataclass(frozen=True)
class JobEstimate:
    video_tokens: int
    audio_tokens: int
    denoise_bytes: int
    decode_bytes: int
    tiled_decode_bytes: int

    def peak(self, tiled: bool) -> int:
        return max(self.denoise_bytes, self.tiled_decode_bytes if tiled else self.decode_bytes)


def estimate(
    shape: ModelShape,
    plan: FramePlan,
    width: int,
    height: int,
    batch: int,
    cfg: bool,
    tile: TileSize | None = None,
) -> JobEstimate:
    tile = tile or TileSize()
    lat_h, lat_w = height // shape.spatial_ratio, width // shape.spatial_ratio
    video_tokens = plan.latent_frames * lat_h * lat_w
    audio_tokens = round(plan.generated_frames / plan.fps * AUDIO_TOKENS_PER_SECOND) + 1
    rows = batch * (2 if cfg else 1)
    denoise = (
        rows
        * (video_tokens * shape.inner_dim + audio_tokens * shape.audio_inner_dim)
        * shape.act_bytes
        * TRANSFORMER_FACTOR
    )

    def decode(frames: int, h: int, w: int, out_frames: int) -> int:
        stage = frames * (h // shape.vae_patch) * (w // shape.vae_patch) * shape.vae_last_channels
        output = out_frames * height * width * 3 * 4 * DECODE_OUTPUT_FACTOR
        return batch * (stage * shape.act_bytes * DECODE_STAGE_FACTOR + output)

    frames = plan.generated_frames
    untiled = decode(frames, height, width, frames)
    tiled = decode(min(frames, tile.frames + 1), min(height, tile.height), min(width, tile.width), frames)
    return JobEstimate(video_tokens, audio_tokens, denoise, untiled, tiled)


def limiting_parameter(plan: FramePlan, width: int, height: int) -> str:
    """The parameter furthest above a typical job (5 s at 24 fps, 768x512): the one to lower."""
    frame_ratio = plan.requested_frames / 121
    pixel_ratio = (width * height) / (768 * 512)
    if pixel_ratio >= frame_ratio:
        return "width" if width >= height else "height"
    return "fps" if plan.fps > 30 else "duration"


def describe(nbytes: float) -> str:
    return f"{nbytes / GiB:.1f} GiB"
