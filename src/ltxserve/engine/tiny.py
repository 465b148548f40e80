"""Build a tiny, random-weight LTX-2 that runs offline.

The result is made of the very classes a real LTX-2 checkpoint loads into (``LTX2Pipeline``'s
components), with real audio/video ratios (32x spatial and 8x temporal video compression,
24 kHz stereo audio), so every code path of ltxserve runs as it would on the real model.
Its weights are random: **it outputs noise**. It exists for tests, benchmarks and the
embedded default when no checkpoint is configured; nothing it produces is a "video" of
anything.

The diffusers tests fetch a tokenizer and text encoder from the hub, which is impossible
here, so both are built locally: a byte-level ``GemmaTokenizer`` and a 2-layer
``Gemma3ForConditionalGeneration`` (with a 1-layer SigLIP vision tower so image-conditioned
prompt enhancement works too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: Said wherever the tiny model's text is shown: its 2-layer random Gemma writes random tokens.
TINY_GIBBERISH = "the tiny random-weight model writes gibberish, not a real enhancement"

#: Written into the saved directory so the loader can say plainly that it loaded noise.
MARKER_FILE = "ltxserve_tiny_model.json"


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the tiny model. ``mid`` below is a larger preset for CPU benchmarks."""

    text_hidden: int = 32
    text_layers: int = 2
    transformer_heads: int = 2
    transformer_head_dim: int = 8
    transformer_layers: int = 2
    audio_heads: int = 2
    audio_head_dim: int = 4
    latent_channels: int = 8
    vae_channels: tuple[int, int, int, int] = (8, 16, 32, 64)
    seed: int = 0
    #: Learnable registers in the text connectors (the real LTX-2 has 128): they replace the text
    #: padding, so the transformer's text mask masks nothing (what context parallelism needs).
    text_registers: int | None = None
    #: Which LTX-2 layout: "2.3" adds what LTX-2.3 (22B) changed (see ``build_tiny_pipeline``).
    family: Literal["2.0", "2.3"] = "2.0"


#: Roughly 10-30 s per 512x320, 2 s, 8-step job on a 2-core CPU: for benchmarks, not tests.
MID_CONFIG = TinyModelConfig(
    text_hidden=256,
    text_layers=4,
    transformer_heads=8,
    transformer_head_dim=64,
    transformer_layers=8,
    audio_heads=4,
    audio_head_dim=32,
    latent_channels=32,
    vae_channels=(32, 64, 128, 256),
)

PRESETS: dict[str, TinyModelConfig] = {
    "tiny": TinyModelConfig(),
    "mid": MID_CONFIG,
    "tiny-2.3": TinyModelConfig(family="2.3"),
}

_SPECIAL_TOKENS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)

# Gemma 3's chat template, reduced to what the LTX-2 prompt enhancer sends: a system turn folded
# into the first user turn, text or [image, text] content, and a generation prompt.
_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{%- set ns.system = m['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' }}"
    "{%- if loop.index0 == 1 %}{{ ns.system }}{% endif -%}"
    "{%- if m['content'] is string -%}{{ m['content'] }}"
    "{%- else -%}{%- for item in m['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- else -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def _build_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import GemmaTokenizer

    vocab = {token: i for i, token in enumerate(_SPECIAL_TOKENS)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for code in range(32, 127):
        char = "\u2581" if code == 32 else chr(code)
        vocab.setdefault(char, len(vocab))
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=[],
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def build_tiny_pipeline(config: TinyModelConfig | None = None):  # type: ignore[no-untyped-def]
    """Return an ``LTX2Pipeline`` with random weights built from ``config``.

    ``family="2.3"`` builds LTX-2.3's layout (as ``lightricks_config.translate`` maps a 2.3 release
    file): gated attention and prompt (cross-attention AdaLN) modulation in the transformer, the
    text features projected per modality before gated connectors as wide as each transformer
    stream, a decoder of separate compress_space / compress_time stages (``upsample_type``) with
    zeros padding, and the BigVGAN vocoder with a bandwidth-extension generator to 48 kHz
    (``LTX2VocoderWithBWE``). Random weights: it outputs noise too."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    cfg = config or TinyModelConfig()
    v23 = cfg.family == "2.3"
    tokenizer = _build_tokenizer()
    image_seq_length = 4

    torch.manual_seed(cfg.seed)
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": cfg.text_hidden,
        "intermediate_size": cfg.text_hidden * 2,
        "num_hidden_layers": cfg.text_layers,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": cfg.text_hidden // 2,
        "sliding_window": 64,
        "max_position_embeddings": 2048,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    vision_config = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    text_encoder = Gemma3ForConditionalGeneration(
        Gemma3Config(
            text_config=text_config,
            vision_config=vision_config,
            mm_tokens_per_image=image_seq_length,
            boi_token_index=tokenizer.boi_token_id,
            eoi_token_index=tokenizer.eoi_token_id,
            image_token_index=tokenizer.image_token_id,
        )
    ).eval()
    text_encoder.generation_config.pad_token_id = 0
    text_encoder.generation_config.eos_token_id = [1, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        chat_template=_CHAT_TEMPLATE,
        image_seq_length=image_seq_length,
    )

    video_dim = cfg.transformer_heads * cfg.transformer_head_dim
    audio_dim = cfg.audio_heads * cfg.audio_head_dim
    # Audio VAE: base_channels must equal latent_channels * (mel_bins // 4) (see notes).
    mel_bins, audio_latent_channels = 16, 2
    audio_vae: Any = AutoencoderKLLTX2Audio(
        base_channels=audio_latent_channels * (mel_bins // 4),
        output_channels=2,
        ch_mult=(1, 2, 4),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=audio_latent_channels,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=mel_bins,
    )
    transformer = LTX2VideoTransformer3DModel(
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=cfg.transformer_heads,
        attention_head_dim=cfg.transformer_head_dim,
        cross_attention_dim=video_dim,
        audio_in_channels=audio_latent_channels * (mel_bins // 4),
        audio_out_channels=audio_latent_channels * (mel_bins // 4),
        audio_num_attention_heads=cfg.audio_heads,
        audio_attention_head_dim=cfg.audio_head_dim,
        audio_cross_attention_dim=audio_dim,
        num_layers=cfg.transformer_layers,
        qk_norm="rms_norm_across_heads",
        caption_channels=cfg.text_hidden,
        rope_double_precision=False,
        rope_type="split",
        gated_attn=v23,
        cross_attn_mod=v23,
        audio_gated_attn=v23,
        audio_cross_attn_mod=v23,
        use_prompt_embeddings=not v23,
        perturbed_attn=v23,  # STG's processor (see lightricks_config): LTX-2.3 samples with STG
    )
    if v23:
        # LTX-2.3 projects the stacked text features per modality, straight to each stream's width
        # (4096 / 2048 on the real model), and its connectors run at that width.
        connector_sizes: dict[str, Any] = {
            "video_connector_num_attention_heads": cfg.transformer_heads,
            "video_connector_attention_head_dim": cfg.transformer_head_dim,
            "audio_connector_num_attention_heads": cfg.audio_heads,
            "audio_connector_attention_head_dim": cfg.audio_head_dim,
            "video_gated_attn": True,
            "audio_gated_attn": True,
            "per_modality_projections": True,
            "video_hidden_dim": video_dim,
            "audio_hidden_dim": audio_dim,
            "proj_bias": True,
        }
    else:
        # LTX-2.0 connectors run at the text encoder's width (3840 = 30 x 128 on the real model).
        connector_sizes = {
            "video_connector_num_attention_heads": 2,
            "video_connector_attention_head_dim": cfg.text_hidden // 2,
            "audio_connector_num_attention_heads": 2,
            "audio_connector_attention_head_dim": cfg.text_hidden // 2,
        }
    connectors = LTX2TextConnectors(
        caption_channels=cfg.text_hidden,
        text_proj_in_factor=cfg.text_layers + 1,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=cfg.text_registers,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=cfg.text_registers,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
        **connector_sizes,
    )
    # The real LTX-2 block layout with small channels; the ratios must be passed explicitly
    # because the formula applied to a shrunken config reports other values.
    c = cfg.vae_channels
    decoder_layout: dict[str, Any] = (
        # LTX-2.3's decoder, as ``lightricks_config`` translates a 2.3 file: separate compress_time and
        # compress_space stages, one compress_all without a channel change, zeros padding.
        {
            "decoder_block_out_channels": (c[1], c[2], c[2], c[3]),
            "decoder_layers_per_block": (1, 1, 1, 1, 1),
            "decoder_spatio_temporal_scaling": (True, True, True, True),
            "decoder_inject_noise": (False, False, False, False, False),
            "upsample_type": ("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
            "upsample_residual": (False, False, False, False),
            "upsample_factor": (2, 2, 1, 2),
            "encoder_spatial_padding_mode": "zeros",
            "decoder_spatial_padding_mode": "zeros",
        }
        if v23
        else {
            "decoder_block_out_channels": c[:3],
            "decoder_layers_per_block": (1, 1, 1, 1),
            "decoder_spatio_temporal_scaling": (True, True, True),
            "decoder_inject_noise": (False, False, False, False),
            "upsample_residual": (True, True, True),
            "upsample_factor": (2, 2, 2),
        }
    )
    vae = AutoencoderKLLTX2Video(
        latent_channels=cfg.latent_channels,
        block_out_channels=c,
        layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
        **decoder_layout,
    )
    vocoder: Any
    if v23:
        # Mel (hop 160 at 16 kHz) -> 16 kHz (x160), then the BWE generator's own 64-bin mel of that
        # (hop 80) -> 48 kHz (x240), added to the resampled base audio.
        vocoder = LTX2VocoderWithBWE(
            in_channels=audio_vae.config.output_channels * mel_bins,
            hidden_channels=32,
            out_channels=2,
            upsample_kernel_sizes=[11, 8, 16],
            upsample_factors=[5, 4, 8],
            resnet_kernel_sizes=[3],
            resnet_dilations=[[1, 3, 5]],
            final_act_fn="clamp",
            bwe_in_channels=128,
            bwe_hidden_channels=32,
            bwe_upsample_kernel_sizes=[12, 11, 16],
            bwe_upsample_factors=[6, 5, 8],
            bwe_resnet_kernel_sizes=[3],
            bwe_resnet_dilations=[[1, 3, 5]],
            num_mel_channels=64,
            input_sampling_rate=16000,
            output_sampling_rate=48000,
        )
    else:
        vocoder = LTX2Vocoder(
            in_channels=audio_vae.config.output_channels * mel_bins,
            hidden_channels=32,
            out_channels=2,
            upsample_kernel_sizes=[12, 10, 16],
            upsample_factors=[6, 5, 8],
            resnet_kernel_sizes=[3],
            resnet_dilations=[[1, 3, 5]],
            leaky_relu_negative_slope=0.1,
            output_sampling_rate=24000,
        )
    return LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=2.05, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05
        ),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        transformer=transformer,
        vocoder=vocoder,
        processor=processor,
    )


def build_tiny_upsampler(config: TinyModelConfig | None = None):  # type: ignore[no-untyped-def]
    """A random-weight ``LTX2LatentUpsamplerModel``: LTX-2.0's x2 spatial layout (3-D convs, rational
    resampler at scale 2) with one block per stage and 32 middle channels (GroupNorm needs 32)."""
    import torch
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    cfg = config or TinyModelConfig()
    torch.manual_seed(cfg.seed + 1)
    return LTX2LatentUpsamplerModel(
        in_channels=cfg.latent_channels,
        mid_channels=32,
        num_blocks_per_stage=1,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
        rational_spatial_scale=2.0,
    ).eval()


def is_tiny_model(path: str | Path) -> bool:
    return (Path(path) / MARKER_FILE).is_file()


def save_tiny_model(
    path: str | Path, preset: str = "tiny", upsampler: bool = False, config: TinyModelConfig | None = None
) -> Path:
    """Build the tiny model and write it with ``save_pretrained`` (plus a marker file); with
    ``upsampler``, also a tiny x2 latent upsampler in ``latent_upsampler/`` for two-stage runs.
    ``config`` overrides the preset's sizes."""
    if preset not in PRESETS:
        raise ValueError(f"unknown tiny-model preset {preset!r}; choose one of {sorted(PRESETS)}")
    out = Path(path)
    cfg = config or PRESETS[preset]
    pipe = build_tiny_pipeline(cfg)
    pipe.save_pretrained(out)
    if upsampler:
        from ltxserve.engine.two_stage import UPSAMPLER_SUBFOLDER

        build_tiny_upsampler(cfg).save_pretrained(out / UPSAMPLER_SUBFOLDER)
    (out / MARKER_FILE).write_text(
        json.dumps(
            {
                "preset": preset,
                "family": cfg.family,
                "warning": "random weights: this model outputs noise, not video",
            },
            indent=2,
        )
    )
    return out
