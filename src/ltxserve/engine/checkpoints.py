"""Lightricks' single-file LTX-2 checkpoints, converted once into a cached diffusers directory.

Lightricks publishes LTX-2 as one ``.safetensors`` per variant (``ltx-2-19b-dev.safetensors``,
``ltx-2-19b-distilled.safetensors``, ``-fp8`` variants) holding every component but the Gemma text
encoder, under their original key names::

    model.diffusion_model.*                      transformer, plus the text connectors
                                                 (video_/audio_embeddings_connector.*)
    text_embedding_projection.aggregate_embed.*  connectors' input projection (sometimes under the
                                                 model.diffusion_model. prefix)
    vae.*  audio_vae.*  vocoder.*                the video VAE, audio VAE and vocoder

The conversion is diffusers' own: the transformer, video VAE and audio VAE go through diffusers'
maintained ``convert_ltx2_{transformer,vae,audio_vae}_to_diffusers`` (``loaders/single_file_utils``,
what ``from_single_file`` calls); the connectors and vocoder, which diffusers 0.42 has no single-file
mapping for, use the rename tables of diffusers' ``scripts/convert_ltx2_to_diffusers.py``. Each
component is read from the file on its own (safetensors reads only the keys asked for), renamed,
loaded strictly (a key the model does not expect, or one it misses, is an error naming the keys)
into a model built from its diffusers config, and written with ``save_pretrained`` into
``data_dir/converted/<name>-<key>/``. The key covers the file's path, size and mtime, the configs
and the conversion version, so a replaced checkpoint is converted again and an unchanged one is
converted once. Later starts load that directory with plain ``from_pretrained``.

The configs are LTX-2.0's, taken from diffusers' conversion script (``get_ltx2_*_config("2.0")``);
``single_file_config`` names a diffusers directory or hub id whose component configs to use instead
(another LTX-2 release, or the tiny model in tests).

FP8 variants keep float8 (e4m3) transformer weights. They are loaded only on CUDA, where diffusers'
layerwise casting keeps the weights in float8 and computes each layer in bfloat16; elsewhere
``CheckpointError`` says so before anything is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ltxserve.logs import get_logger

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

SINGLE_FILE_SUFFIXES: Final = (".safetensors", ".sft")
CONVERTED_DIRNAME = "converted"
#: Bump when the conversion changes, so caches written by an older one are not reused.
CONVERSION_VERSION = 3  # 2: the embedded config decides the architecture; 3: LTX-2.3 key names
MARKER_FILE = "ltxserve_converted.json"

TRANSFORMER_PREFIX = "model.diffusion_model."
CONNECTOR_PREFIXES: Final = (
    "video_embeddings_connector.",
    "audio_embeddings_connector.",
    "text_embedding_projection.",
)

# From diffusers' scripts/convert_ltx2_to_diffusers.py (LTX_2_0_CONNECTORS_KEYS_RENAME_DICT,
# LTX_2_0_VOCODER_RENAME_DICT): applied in order with str.replace, as the script does.
CONNECTORS_RENAME: Final = {
    "video_embeddings_connector": "video_connector",
    "audio_embeddings_connector": "audio_connector",
    "transformer_1d_blocks": "transformer_blocks",
    "text_embedding_projection.aggregate_embed": "text_proj_in",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
VOCODER_RENAME: Final = {
    "ups": "upsamplers",
    "resblocks": "resnets",
    "conv_pre": "conv_in",
    "conv_post": "conv_out",
}

# LTX-2.0 component configs from diffusers' scripts/convert_ltx2_to_diffusers.py (version "2.0");
# parameters not named take the 0.42 class defaults, which are LTX-2.0's.
LTX2_0_CONFIGS: Final[dict[str, dict[str, Any]]] = {
    "transformer": {
        "in_channels": 128,
        "out_channels": 128,
        "patch_size": 1,
        "patch_size_t": 1,
        "num_attention_heads": 32,
        "attention_head_dim": 128,
        "cross_attention_dim": 4096,
        "vae_scale_factors": (8, 32, 32),
        "pos_embed_max_pos": 20,
        "base_height": 2048,
        "base_width": 2048,
        "audio_in_channels": 128,
        "audio_out_channels": 128,
        "audio_patch_size": 1,
        "audio_patch_size_t": 1,
        "audio_num_attention_heads": 32,
        "audio_attention_head_dim": 64,
        "audio_cross_attention_dim": 2048,
        "audio_scale_factor": 4,
        "audio_pos_embed_max_pos": 20,
        "audio_sampling_rate": 16000,
        "audio_hop_length": 160,
        "num_layers": 48,
        "activation_fn": "gelu-approximate",
        "qk_norm": "rms_norm_across_heads",
        "norm_elementwise_affine": False,
        "norm_eps": 1e-6,
        "caption_channels": 3840,
        "attention_bias": True,
        "attention_out_bias": True,
        "rope_theta": 10000.0,
        "rope_double_precision": True,
        "causal_offset": 1,
        "timestep_scale_multiplier": 1000,
        "cross_attn_timestep_scale_multiplier": 1000,
        "rope_type": "split",
    },
    "connectors": {
        "caption_channels": 3840,
        "text_proj_in_factor": 49,
        "video_connector_num_attention_heads": 30,
        "video_connector_attention_head_dim": 128,
        "video_connector_num_layers": 2,
        "video_connector_num_learnable_registers": 128,
        "audio_connector_num_attention_heads": 30,
        "audio_connector_attention_head_dim": 128,
        "audio_connector_num_layers": 2,
        "audio_connector_num_learnable_registers": 128,
        "connector_rope_base_seq_len": 4096,
        "rope_theta": 10000.0,
        "rope_double_precision": True,
        "causal_temporal_positioning": False,
        "rope_type": "split",
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 128,
        "block_out_channels": (256, 512, 1024, 2048),
        "down_block_types": ("LTX2VideoDownBlock3D",) * 4,
        "decoder_block_out_channels": (256, 512, 1024),
        "layers_per_block": (4, 6, 6, 2, 2),
        "decoder_layers_per_block": (5, 5, 5, 5),
        "spatio_temporal_scaling": (True, True, True, True),
        "decoder_spatio_temporal_scaling": (True, True, True),
        "decoder_inject_noise": (False, False, False, False),
        "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        "upsample_residual": (True, True, True),
        "upsample_factor": (2, 2, 2),
        "timestep_conditioning": False,
        "patch_size": 4,
        "patch_size_t": 1,
        "resnet_norm_eps": 1e-6,
        "encoder_causal": True,
        "decoder_causal": False,
        "encoder_spatial_padding_mode": "zeros",
        "decoder_spatial_padding_mode": "reflect",
        "spatial_compression_ratio": 32,
        "temporal_compression_ratio": 8,
    },
    "audio_vae": {
        "base_channels": 128,
        "output_channels": 2,
        "ch_mult": (1, 2, 4),
        "num_res_blocks": 2,
        "attn_resolutions": None,
        "in_channels": 2,
        "resolution": 256,
        "latent_channels": 8,
        "norm_type": "pixel",
        "causality_axis": "height",
        "dropout": 0.0,
        "mid_block_add_attention": False,
        "sample_rate": 16000,
        "mel_hop_length": 160,
        "is_causal": True,
        "mel_bins": 64,
        "double_z": True,
    },
    "vocoder": {
        "in_channels": 128,
        "hidden_channels": 1024,
        "out_channels": 2,
        "upsample_kernel_sizes": [16, 15, 8, 4, 4],
        "upsample_factors": [6, 5, 2, 2, 2],
        "resnet_kernel_sizes": [3, 7, 11],
        "resnet_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "leaky_relu_negative_slope": 0.1,
        "output_sampling_rate": 24000,
    },
    "scheduler": {
        "use_dynamic_shifting": True,
        "base_shift": 0.95,
        "max_shift": 2.05,
        "base_image_seq_len": 1024,
        "max_image_seq_len": 4096,
        "shift_terminal": 0.1,
    },
    # get_ltx2_spatial_latent_upsampler_config("2.0"), for ltx-2-spatial-upscaler-x2-*.safetensors.
    "latent_upsampler": {
        "in_channels": 128,
        "mid_channels": 1024,
        "num_blocks_per_stage": 4,
        "dims": 3,
        "spatial_upsample": True,
        "temporal_upsample": False,
        "rational_spatial_scale": 2.0,
    },
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message says what to change."""


# --------------------------------------------------------------------------- inspection


def is_single_file(location: str | None) -> bool:
    """A local ``.safetensors`` file (a Lightricks checkpoint) rather than a directory or hub id."""
    if not location:
        return False
    path = Path(location)
    return path.suffix in SINGLE_FILE_SUFFIXES and path.is_file()


def header_dtypes(path: str | Path) -> set[str]:
    """The tensor dtypes a safetensors file declares, from its JSON header (nothing else is read)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def is_fp8_checkpoint(path: str | Path) -> bool:
    """Float8 weights inside, or an ``fp8`` name (Lightricks' naming) on a file we cannot read."""
    from ltxserve.presets import detect_preset_name

    try:
        return any(d.startswith("F8") for d in header_dtypes(path))
    except (OSError, ValueError, struct.error):
        return detect_preset_name(str(path)).endswith("fp8")


def check_fp8_supported(path: str | Path, device: torch.device) -> None:
    """Refuse an FP8 checkpoint where its weights cannot be kept in float8 (anything but CUDA)."""
    import torch

    if device.type == "cuda" and hasattr(torch, "float8_e4m3fn"):
        return
    raise CheckpointError(
        f"{Path(path).name} is an FP8 checkpoint: its float8 (e4m3) transformer weights are kept in "
        "float8 and computed per layer in bfloat16 (diffusers layerwise casting), which needs a CUDA "
        f"GPU; this server runs on {device.type}. Use the bf16 checkpoint of the same model "
        "(e.g. ltx-2-19b-dev.safetensors or ltx-2-19b-distilled.safetensors) or run on a CUDA device."
    )


# --------------------------------------------------------------------------- conversion


def rename_keys(state_dict: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """diffusers' conversion-script renaming: every rule applied in order with ``str.replace``."""
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        new = key
        for old, rep in renames.items():
            new = new.replace(old, rep)
        out[new] = value
    return out


def _read(path: Path, keys: Iterable[str]) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {key: f.get_tensor(key) for key in keys}


def _split_keys(path: Path) -> dict[str, list[str]]:
    """Group a Lightricks file's keys by component."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        keys = list(f.keys())
    groups: dict[str, list[str]] = {
        "transformer": [],
        "connectors": [],
        "vae": [],
        "audio_vae": [],
        "vocoder": [],
    }
    for key in keys:
        if key.startswith(TRANSFORMER_PREFIX):
            inner = key[len(TRANSFORMER_PREFIX) :]
            groups["connectors" if inner.startswith(CONNECTOR_PREFIXES) else "transformer"].append(key)
        elif key.startswith(CONNECTOR_PREFIXES):
            groups["connectors"].append(key)
        else:
            head = key.split(".", 1)[0]
            if head in groups:
                groups[head].append(key)
    missing = [name for name, ks in groups.items() if not ks]
    if missing:
        raise CheckpointError(
            f"{path.name} is not a Lightricks LTX-2 single-file checkpoint: no weights for "
            f"{', '.join(missing)} (expected keys under {TRANSFORMER_PREFIX}, vae., audio_vae., vocoder.)"
        )
    return groups


def embedded_config(path: str | Path) -> dict[str, Any] | None:
    """The JSON ``config`` Lightricks embeds in a release file's metadata (None when absent)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
    raw = meta.get("config")
    return json.loads(raw) if raw else None


#: Gemma-3 12B, the text encoder of LTX-2.0 and 2.3 (ltx-core's GEMMA3_CONFIG_FOR_LTX): hidden width.
GEMMA3_HIDDEN: Final = 3840


def _text_shape(path: Path, keys: list[str], text_hidden: int | None) -> tuple[int | None, int | None]:
    """(hidden-state count, hidden width) of the text encoder the connectors were trained on, from
    the projection weights (ltx-core takes them from its Gemma config, not from the file). LTX-2.0's
    projection (width x states -> width) gives both; LTX-2.3's per-modality ones (width x states ->
    transformer width) only their product, split with Gemma-3 12B's width unless ``text_hidden``
    says otherwise (tiny test models)."""
    from safetensors import safe_open

    proj = sorted(k for k in keys if k.endswith("aggregate_embed.weight"))
    if not proj:
        return None, None
    with safe_open(str(path), framework="pt", device="cpu") as f:
        out_dim, in_dim = f.get_slice(proj[0]).get_shape()
    if proj[0].endswith("text_embedding_projection.aggregate_embed.weight"):
        return in_dim // out_dim, out_dim  # LTX-2.0: Linear(width x states, width)
    hidden = text_hidden or GEMMA3_HIDDEN
    if in_dim % hidden:
        raise CheckpointError(
            f"{path.name}: text projection takes {in_dim} features, not a multiple of the text encoder's "
            f"width {hidden}"
        )
    return in_dim // hidden, hidden


def configs_for(
    path: Path, groups: dict[str, list[str]], config_source: str | None, text_hidden: int | None = None
) -> dict[str, dict[str, Any]]:
    """The diffusers configs to convert ``path`` with: an explicit ``config_source`` (operator's
    choice), else the file's own embedded config (every field honoured or the file refused, see
    ``lightricks_config``), else (a file without one) the bundled LTX-2.0 configs."""
    from ltxserve.engine import lightricks_config

    if config_source is not None:
        return _component_configs(config_source)
    embedded = embedded_config(path)
    if embedded is None:
        log.info("no embedded config: bundled LTX-2.0 configs", checkpoint=path.name)
        return _component_configs(None)
    layers, hidden = _text_shape(path, groups["connectors"], text_hidden)
    try:
        translation = lightricks_config.translate(embedded, text_layers=layers, text_hidden=hidden)
    except lightricks_config.ConfigError as exc:
        raise CheckpointError(f"{path.name}: {exc}") from exc
    if translation.ignored:
        log.info(
            "embedded config fields ltx-core does not read", checkpoint=path.name, fields=translation.ignored
        )
    configs = translation.configs
    configs["scheduler"] = dict(LTX2_0_CONFIGS["scheduler"])
    return configs


def _component_configs(config_source: str | None) -> dict[str, dict[str, Any]]:
    """Per-component diffusers configs: bundled LTX-2.0, or read from a diffusers directory / hub id."""
    if config_source is None:
        return {name: dict(cfg) for name, cfg in LTX2_0_CONFIGS.items()}
    from diffusers import FlowMatchEulerDiscreteScheduler

    classes: dict[str, Any] = {name: cls for name, (cls, _) in _converters().items()}
    classes["scheduler"] = FlowMatchEulerDiscreteScheduler
    configs: dict[str, dict[str, Any]] = {}
    for name, cls in classes.items():
        raw = cls.load_config(config_source, subfolder=name)
        configs[name] = {k: v for k, v in dict(raw).items() if not k.startswith("_")}
    return configs


def load_strict(cls: Any, config: dict[str, Any], state_dict: dict[str, Any], what: str) -> Any:
    """Build ``cls`` from ``config`` without allocating, then take ``state_dict`` strictly."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(config)
    expected = set(model.state_dict())
    given = set(state_dict)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: the checkpoint does not match the model config "
            f"(missing {len(missing)}: {missing[:5]}; unexpected {len(unexpected)}: {unexpected[:5]}). "
            "If it is another LTX-2 release, set LTXSERVE_SINGLE_FILE_CONFIG to a diffusers directory "
            "of that release."
        )
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


#: LTX-2.3 keys diffusers 0.42's single-file mappings (written for LTX-2.0) do not rename: its
#: text-cross-attention modulation, its per-modality text projections, and the vocoder's BWE
#: generator (whose ``ups`` / ``act_post`` / anti-aliasing filter names differ from diffusers').
LTX2_3_TRANSFORMER_RENAME: Final = {
    "audio_prompt_adaln_single.": "audio_prompt_adaln.",
    "prompt_adaln_single.": "prompt_adaln.",
}
LTX2_3_CONNECTORS_RENAME: Final = {
    "text_embedding_projection.video_aggregate_embed": "video_text_proj_in",
    "text_embedding_projection.audio_aggregate_embed": "audio_text_proj_in",
}


def _rename_vocoder_key(key: str) -> str:
    """Lightricks' vocoder keys (HiFi-GAN for LTX-2.0; BigVGAN with a BWE generator for 2.3) as
    diffusers' ``LTX2Vocoder`` / ``LTX2VocoderWithBWE`` name them (whole path segments only)."""
    parts = key.split(".")
    table = {"ups": "upsamplers", "resblocks": "resnets", "conv_pre": "conv_in", "conv_post": "conv_out"}
    parts = [table.get(part, part) for part in parts]
    key = ".".join(parts)
    key = key.replace(".act_post.", ".act_out.") if ".act_post." in key else key
    key = key.replace("act_post.", "act_out.") if key.startswith("act_post.") else key
    return key.replace(".downsample.lowpass.filter", ".downsample.filter")


def _vae_block_map(keys: Iterable[str]) -> dict[str, str]:
    """Lightricks' flat ``down_blocks.N`` / ``up_blocks.N`` (res and scaling blocks alternating, in
    any number: LTX-2.0 has 9 encoder and 7 decoder blocks, LTX-2.3's decoder 9) as diffusers'
    nested blocks: encoder 2i -> down_blocks.i, 2i+1 -> down_blocks.i.downsamplers.0, last ->
    mid_block; decoder 0 -> mid_block, 2i+1 -> up_blocks.i.upsamplers.0, 2i+2 -> up_blocks.i."""
    import re

    counts: dict[str, int] = {}
    for key in keys:
        m = re.match(r"vae\.(encoder|decoder)\.(down|up)_blocks\.(\d+)\.", key)
        if m:
            counts[m.group(1)] = max(counts.get(m.group(1), 0), int(m.group(3)) + 1)
    out: dict[str, str] = {}
    for n in range(counts.get("encoder", 0)):
        last = n == counts["encoder"] - 1
        out[f"encoder.down_blocks.{n}."] = (
            "encoder.mid_block."
            if last
            else f"encoder.down_blocks.{n // 2}." + ("downsamplers.0." if n % 2 else "")
        )
    for n in range(counts.get("decoder", 0)):
        out[f"decoder.up_blocks.{n}."] = (
            "decoder.mid_block."
            if n == 0
            else f"decoder.up_blocks.{(n - 1) // 2}." + ("upsamplers.0." if n % 2 else "")
        )
    return out


def convert_vae(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Lightricks' video VAE keys as diffusers' ``AutoencoderKLLTX2Video`` names them, for any
    block count (diffusers' ``convert_ltx2_vae_to_diffusers`` has LTX-2.0's 7-block decoder
    hard-coded, which mis-numbers LTX-2.3's 9 blocks)."""
    blocks = _vae_block_map(checkpoint)
    out: dict[str, Any] = {}
    for key, value in checkpoint.items():
        inner = key.removeprefix("vae.")
        if inner.startswith("per_channel_statistics."):
            stat = inner.removeprefix("per_channel_statistics.")
            name = {"mean-of-means": "latents_mean", "std-of-means": "latents_std"}.get(stat)
            if name is not None:
                out[name] = value
            continue  # "channel", "mean-of-stds": statistics diffusers does not keep
        for old, new in blocks.items():
            if inner.startswith(old):
                inner = new + inner[len(old) :]
                break
        out[inner.replace("res_blocks", "resnets")] = value
    return out


def _converters() -> dict[str, tuple[Any, Callable[[dict[str, Any]], dict[str, Any]]]]:
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.loaders.single_file_utils import (
        convert_ltx2_audio_vae_to_diffusers,
        convert_ltx2_transformer_to_diffusers,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder

    def transformer(sd: dict[str, Any]) -> dict[str, Any]:
        out = convert_ltx2_transformer_to_diffusers(sd)
        return {
            next(
                (new + k[len(old) :] for old, new in LTX2_3_TRANSFORMER_RENAME.items() if k.startswith(old)),
                k,
            ): v
            for k, v in out.items()
        }

    def connectors(sd: dict[str, Any]) -> dict[str, Any]:
        inner = {k.removeprefix(TRANSFORMER_PREFIX): v for k, v in sd.items()}
        return rename_keys(rename_keys(inner, LTX2_3_CONNECTORS_RENAME), CONNECTORS_RENAME)

    def vocoder(sd: dict[str, Any]) -> dict[str, Any]:
        return {_rename_vocoder_key(k.removeprefix("vocoder.")): v for k, v in sd.items()}

    return {
        # diffusers' maintained single-file mappings (they strip the prefixes themselves)
        "transformer": (LTX2VideoTransformer3DModel, transformer),
        "vae": (AutoencoderKLLTX2Video, convert_vae),
        "audio_vae": (AutoencoderKLLTX2Audio, convert_ltx2_audio_vae_to_diffusers),
        # the conversion script's tables
        "connectors": (LTX2TextConnectors, connectors),
        "vocoder": (LTX2Vocoder, vocoder),
    }


def cache_key(path: Path, config_source: str | None) -> str:
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{config_source}|v{CONVERSION_VERSION}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def converted_location(path: Path, data_dir: Path, config_source: str | None) -> Path:
    return data_dir / CONVERTED_DIRNAME / f"{path.stem}-{cache_key(path, config_source)}"


def convert_single_file(
    path: Path, out: Path, config_source: str | None = None, text_hidden: int | None = None
) -> Path:
    """Write ``path`` (Lightricks layout) as a diffusers directory at ``out`` (no text encoder).

    Written into a sibling temporary directory and renamed into place, so an interrupted
    conversion never leaves a directory that looks complete.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    t0 = time.perf_counter()
    groups = _split_keys(path)
    configs = configs_for(path, groups, config_source, text_hidden)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index: dict[str, Any] = {"_class_name": "LTX2Pipeline"}
    for name, (cls, convert) in _converters().items():
        cls = _vocoder_class(configs[name]) if name == "vocoder" else cls
        configs[name] = {k: v for k, v in configs[name].items() if k != "_class_name"}
        state = convert(_read(path, groups[name]))
        model = load_strict(cls, configs[name], state, f"{path.name} ({name})")
        model.save_pretrained(tmp / name)
        index[name] = [_library(cls), cls.__name__]
        del model, state
        log.info("converted component", checkpoint=path.name, component=name)
    FlowMatchEulerDiscreteScheduler.from_config(configs["scheduler"]).save_pretrained(tmp / "scheduler")
    index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    for absent in ("text_encoder", "tokenizer", "processor", "prompt_enhancer", "duration_head"):
        index[absent] = [None, None]
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
    (tmp / MARKER_FILE).write_text(
        json.dumps(
            {
                "source": str(path.resolve()),
                "size": path.stat().st_size,
                "config": config_source or "embedded (or bundled LTX-2.0 when the file has none)",
                "conversion_version": CONVERSION_VERSION,
            },
            indent=2,
        )
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info(
        "checkpoint converted", checkpoint=str(path), to=str(out), seconds=round(time.perf_counter() - t0, 1)
    )
    return out


def _vocoder_class(config: dict[str, Any]) -> Any:
    """``LTX2Vocoder`` (LTX-2.0) or ``LTX2VocoderWithBWE`` (LTX-2.3), as the config names it."""
    from diffusers.pipelines import ltx2

    return getattr(ltx2, config.get("_class_name", "LTX2Vocoder"))


def _library(cls: type) -> str:
    return "ltx2" if cls.__module__.startswith("diffusers.pipelines.ltx2") else "diffusers"


def ensure_converted(path: Path, data_dir: Path, config_source: str | None = None) -> Path:
    """The cached diffusers directory for ``path``, converting it on first use."""
    out = converted_location(path, data_dir, config_source)
    if (out / MARKER_FILE).is_file():
        log.info("using converted checkpoint", checkpoint=str(path), cache=str(out))
        return out
    log.info("converting single-file checkpoint (once)", checkpoint=str(path), to=str(out))
    return convert_single_file(path, out, config_source)


# --------------------------------------------------------------------------- text encoder


def load_text_components(location: str, dtype: torch.dtype) -> dict[str, Any]:
    """Gemma-3 text encoder, tokenizer and (if present) processor for a single-file checkpoint.

    ``location`` is a diffusers LTX-2 directory or hub id (``text_encoder/``, ``tokenizer/``,
    ``processor/`` subfolders) or a plain Gemma-3 model directory or hub id.
    """
    from transformers import AutoProcessor, AutoTokenizer, Gemma3ForConditionalGeneration

    local = Path(location)
    if local.is_dir():
        nested = (local / "text_encoder" / "config.json").is_file()
    else:
        nested = _hub_has_subfolder(location, "text_encoder")

    def sub(name: str) -> str:
        return name if nested else ""

    text_encoder = Gemma3ForConditionalGeneration.from_pretrained(
        location, dtype=dtype, subfolder=sub("text_encoder")
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(location, subfolder=sub("tokenizer"))
    processor: Any = None
    try:
        processor = AutoProcessor.from_pretrained(location, subfolder=sub("processor"))
    except (OSError, ValueError, TypeError) as exc:  # optional: only image-conditioned enhancement uses it
        log.info("no processor with the text encoder", location=location, reason=str(exc)[:120])
    return {"text_encoder": text_encoder, "tokenizer": tokenizer, "processor": processor}


def _hub_has_subfolder(repo_id: str, subfolder: str) -> bool:
    try:
        from huggingface_hub import file_exists

        return bool(file_exists(repo_id, f"{subfolder}/config.json"))
    except Exception:  # offline or unknown: assume a plain Gemma repository
        return False


@dataclass(frozen=True)
class SingleFileSource:
    checkpoint: Path
    converted: Path
    text_encoder: str
    fp8: bool


def prepare_single_file(
    checkpoint: str,
    text_encoder: str | None,
    data_dir: Path,
    device: torch.device,
    config_source: str | None = None,
) -> SingleFileSource:
    """Check (FP8 support, a text encoder) before any heavy work, then convert or reuse the cache."""
    path = Path(checkpoint)
    fp8 = is_fp8_checkpoint(path)
    if fp8:
        check_fp8_supported(path, device)
    if not text_encoder:
        raise CheckpointError(
            f"{path.name} is a single-file checkpoint without the Gemma-3 text encoder: set "
            "LTXSERVE_TEXT_ENCODER_PATH to a diffusers LTX-2 directory or hub id (text_encoder/, "
            "tokenizer/) or a Gemma-3 model (e.g. google/gemma-3-12b-it-qat-q4_0-unquantized)."
        )
    converted = ensure_converted(path, data_dir, config_source)
    return SingleFileSource(path, converted, text_encoder, fp8)


def keep_fp8(transformer: Any, compute_dtype: torch.dtype) -> None:
    """Store an FP8 checkpoint's transformer in float8 again, computing each layer in
    ``compute_dtype`` (diffusers layerwise casting; its default skips norms and embeddings).

    ``from_pretrained`` upcasts the float8 tensors on load; float8 -> bfloat16 -> float8 is exact,
    so the checkpoint's float8 weights come back bit for bit.
    """
    import torch

    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)
    log.info("fp8 checkpoint: transformer weights kept in float8", compute_dtype=str(compute_dtype))
