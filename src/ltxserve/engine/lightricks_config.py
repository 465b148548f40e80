"""The JSON ``config`` Lightricks embeds in its single-file checkpoints, as diffusers configs.

Every Lightricks release file (``ltx-2-19b-dev.safetensors``, the spatial upscaler, ...) carries its
architecture in the safetensors metadata under ``config``; ltx-core builds its models from it (the
``*Configurator.from_config`` classes of ``ltx_core.model``). This module reads the same fields and
turns them into the configs of diffusers' classes, so a file is converted as what it declares and
not as what we expect. The rule: every field ltx-core reads is either honoured (mapped onto the
diffusers config) or, when diffusers 0.42 cannot express its value, the file is refused with
``ConfigError`` naming the field. Fields ltx-core does not read cannot change the reference model
either; they are returned as ``ignored`` so the loader can log them.

Defaults are ltx-core 1.0.0's (used when a field is absent, as ltx-core does), except the few
fields ltx-core insists on (``check_config_value``), whose expected value is required here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

#: Transformer fields that must hold exactly this value (ltx-core's ``check_config_value`` list; a
#: missing field counts as the value, as diffusers has no other behaviour to offer).
TRANSFORMER_FIXED: Final[dict[str, Any]] = {
    "dropout": 0.0,
    "attention_bias": True,
    "num_vector_embeds": None,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "use_linear_projection": False,
    "only_cross_attention": False,
    "cross_attention_norm": True,
    "double_self_attention": False,
    "upcast_attention": False,
    "standardization_norm": "rms_norm",
    "norm_elementwise_affine": False,
    "qk_norm": "rms_norm",
    "positional_embedding_type": "rope",
    "use_audio_video_cross_attention": True,
    "share_ff": False,
    "av_cross_ada_norm": True,
    "use_middle_indices_grid": True,
    "attention_type": "default",  # ltx-core's attention backend choice; numerics are the same
}

#: LTX-2.3's text path (``caption_proj_before_connector`` and friends, ``FeatureExtractorV2``).
V2_TEXT_FIELDS: Final[dict[str, Any]] = {
    "caption_proj_before_connector": True,
    "caption_projection_first_linear": False,
    "caption_proj_input_norm": False,
    "caption_projection_second_linear": False,
}

#: Number of learnable registers of ltx-core's ``Embeddings1DConnector`` (not configurable there).
CONNECTOR_REGISTERS: Final = 128


class ConfigError(ValueError):
    """An embedded config field diffusers cannot reproduce; the message names it."""


@dataclass
class Translation:
    """diffusers configs per component, and the fields ltx-core does not read (logged)."""

    configs: dict[str, dict[str, Any]]
    ignored: list[str] = field(default_factory=list)


class _Fields:
    """Reads one config section, remembering which keys were read (the rest is ``unread``)."""

    def __init__(self, section: dict[str, Any], where: str) -> None:
        self.section = section
        self.where = where
        self.read: set[str] = set()

    def get(self, key: str, default: Any) -> Any:
        self.read.add(key)
        return self.section.get(key, default)

    def require(self, key: str, expected: Any) -> None:
        value = self.get(key, expected)
        if value != expected and not (isinstance(value, (int, float)) and value == expected):
            raise ConfigError(
                f"embedded config {self.where}.{key} = {value!r}: only {expected!r} can be converted "
                "(diffusers 0.42 has no equivalent)"
            )

    def refuse(self, key: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"embedded config {self.where}.{key} = {value!r}: {why}")

    def unread(self) -> list[str]:
        return sorted(f"{self.where}.{k}" for k in self.section if k not in self.read)


# --------------------------------------------------------------------------- transformer + connectors


def _transformer(
    t: _Fields, text_layers: int | None, text_hidden: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    for key, value in TRANSFORMER_FIXED.items():
        t.require(key, value)
    v2_keys = [k for k in V2_TEXT_FIELDS if k in t.section]
    v2 = bool(v2_keys)
    if v2:
        for key, value in V2_TEXT_FIELDS.items():
            if key not in t.section:
                raise t.refuse(key, None, "partial LTX-2.3 text-projection config")
            t.require(key, value)
    rope_type = t.get("rope_type", "interleaved")
    if rope_type not in ("interleaved", "split"):
        raise t.refuse("rope_type", rope_type, "diffusers knows 'interleaved' and 'split'")
    precision = t.get("frequencies_precision", False)
    pe_max = list(t.get("positional_embedding_max_pos", [20, 2048, 2048]))
    if len(pe_max) != 3:
        raise t.refuse("positional_embedding_max_pos", pe_max, "expected [time, height, width]")
    audio_pe_max = list(t.get("audio_positional_embedding_max_pos", [20]))
    if len(audio_pe_max) != 1:
        raise t.refuse("audio_positional_embedding_max_pos", audio_pe_max, "expected [time]")
    gated = bool(t.get("apply_gated_attention", False))
    cross_adaln = bool(t.get("cross_attention_adaln", False))
    theta = float(t.get("positional_embedding_theta", 10000.0))
    heads = t.get("num_attention_heads", 32)
    head_dim = t.get("attention_head_dim", 128)
    audio_heads = t.get("audio_num_attention_heads", 32)
    audio_head_dim = t.get("audio_attention_head_dim", 64)
    caption_channels = t.get("caption_channels", 3840 if not v2 else None)
    transformer: dict[str, Any] = {
        "in_channels": t.get("in_channels", 128),
        "out_channels": t.get("out_channels", 128),
        "patch_size": 1,
        "patch_size_t": 1,
        "num_attention_heads": heads,
        "attention_head_dim": head_dim,
        "cross_attention_dim": t.get("cross_attention_dim", 4096),
        "vae_scale_factors": (8, 32, 32),
        "pos_embed_max_pos": pe_max[0],
        "base_height": pe_max[1],
        "base_width": pe_max[2],
        "gated_attn": gated,
        "cross_attn_mod": cross_adaln,
        "audio_in_channels": t.get("audio_in_channels", 128),
        "audio_out_channels": t.get("audio_out_channels", 128),
        "audio_patch_size": 1,
        "audio_patch_size_t": 1,
        "audio_num_attention_heads": audio_heads,
        "audio_attention_head_dim": audio_head_dim,
        "audio_cross_attention_dim": t.get("audio_cross_attention_dim", 2048),
        "audio_scale_factor": 4,
        "audio_pos_embed_max_pos": audio_pe_max[0],
        "audio_gated_attn": gated,
        "audio_cross_attn_mod": cross_adaln,
        "num_layers": t.get("num_layers", 48),
        "activation_fn": "gelu-approximate",
        "qk_norm": "rms_norm_across_heads",
        "norm_elementwise_affine": False,
        "norm_eps": t.get("norm_eps", 1e-6),
        "caption_channels": caption_channels if caption_channels is not None else 3840,
        "attention_bias": True,
        "attention_out_bias": True,
        "rope_theta": theta,
        "rope_double_precision": precision == "float64",
        "causal_offset": 1,
        "timestep_scale_multiplier": t.get("timestep_scale_multiplier", 1000),
        "cross_attn_timestep_scale_multiplier": t.get("av_ca_timestep_scale_multiplier", 1),
        "rope_type": rope_type,
        "use_prompt_embeddings": not v2,
        # the attention processor that honours STG's perturbation mask (no weights of its own):
        # without it diffusers ignores spatio_temporal_guidance_blocks and STG silently does nothing
        "perturbed_attn": v2,
    }
    connector_max_pos = list(t.get("connector_positional_embedding_max_pos", [1]))
    if len(connector_max_pos) != 1:
        raise t.refuse("connector_positional_embedding_max_pos", connector_max_pos, "expected [length]")
    video_heads = t.get("connector_num_attention_heads", 30)
    video_dim = t.get("connector_attention_head_dim", 128)
    layers = t.get("connector_num_layers", 2)
    connector_gated = bool(t.get("connector_apply_gated_attention", False))
    hidden = text_hidden if text_hidden is not None else (video_heads * video_dim)
    connectors: dict[str, Any] = {
        "caption_channels": hidden,
        "text_proj_in_factor": text_layers if text_layers is not None else 49,
        "video_connector_num_attention_heads": video_heads,
        "video_connector_attention_head_dim": video_dim,
        "video_connector_num_layers": layers,
        "video_connector_num_learnable_registers": CONNECTOR_REGISTERS,
        "video_gated_attn": connector_gated,
        "audio_connector_num_attention_heads": t.get("audio_connector_num_attention_heads", video_heads),
        "audio_connector_attention_head_dim": t.get("audio_connector_attention_head_dim", video_dim),
        "audio_connector_num_layers": t.get("audio_connector_num_layers", layers),
        "audio_connector_num_learnable_registers": CONNECTOR_REGISTERS,
        "audio_gated_attn": connector_gated,
        "connector_rope_base_seq_len": connector_max_pos[0],
        "rope_theta": theta,
        "rope_double_precision": precision == "float64",
        "causal_temporal_positioning": False,
        "rope_type": rope_type,
        "per_modality_projections": v2,
        "video_hidden_dim": heads * head_dim,
        "audio_hidden_dim": audio_heads * audio_head_dim,
        "proj_bias": v2,
    }
    if not v2 and hidden != caption_channels:
        raise t.refuse(
            "caption_channels",
            caption_channels,
            f"the text features are {hidden} wide (connector heads x head dim, or the projection weights)",
        )
    return transformer, connectors


# --------------------------------------------------------------------------- video VAE

_DECODER_UPSAMPLE = {
    "compress_all": "spatiotemporal",
    "compress_time": "temporal",
    "compress_space": "spatial",
}
_ENCODER_DOWNSAMPLE = {
    "compress_all_res": "spatiotemporal",
    "compress_time_res": "temporal",
    "compress_space_res": "spatial",
}


def _blocks(v: _Fields, key: str) -> list[tuple[str, dict[str, Any]]]:
    raw = v.get(key, [])
    out: list[tuple[str, dict[str, Any]]] = []
    for item in raw:
        name, params = item[0], item[1]
        out.append((name, {"num_layers": params} if isinstance(params, int) else dict(params)))
    return out


def _alternating(
    v: _Fields, key: str, blocks: list[tuple[str, dict[str, Any]]], scalers: dict[str, str]
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """Split ``res_x, scale, res_x, scale, ..., res_x`` into the res blocks and the scaling blocks;
    any other layout has no diffusers equivalent."""
    if len(blocks) % 2 == 0 or not blocks:
        raise v.refuse(key, [b[0] for b in blocks], "expected res_x blocks alternating with scaling blocks")
    res, scale = [], []
    for i, (name, params) in enumerate(blocks):
        if i % 2 == 0:
            if name != "res_x":
                raise v.refuse(key, name, f"block {i}: only res_x between scaling blocks can be converted")
            res.append(params)
        else:
            if name not in scalers:
                raise v.refuse(key, name, f"block {i}: diffusers has {sorted(scalers)}")
            scale.append((name, params))
    return res, scale


def _vae(v: _Fields) -> dict[str, Any]:
    v.require("dims", 3)
    v.require("norm_layer", "pixel_norm")
    v.require("latent_log_var", "uniform")
    latent = v.get("latent_channels", 128)
    padding = v.get("spatial_padding_mode", None)
    for mode in (padding,):
        if mode not in (None, "zeros", "reflect", "replicate", "circular"):
            raise v.refuse("spatial_padding_mode", mode, "unknown padding mode")
    # encoder (ltx-core walks the list in order, from pixels to latents)
    enc_res, enc_scale = _alternating(v, "encoder_blocks", _blocks(v, "encoder_blocks"), _ENCODER_DOWNSAMPLE)
    channels, enc_out = latent, []
    for name, params in enc_scale:
        channels *= params.get("multiplier", 2)
        enc_out.append(channels)
        del name
    for i, params in enumerate(enc_res):
        if set(params) - {"num_layers"}:
            raise v.refuse("encoder_blocks", params, f"res_x block {i}: only num_layers can be converted")
    # decoder (ltx-core walks the reversed list, from latents to pixels)
    dec_res, dec_scale = _alternating(v, "decoder_blocks", _blocks(v, "decoder_blocks"), _DECODER_UPSAMPLE)
    dec_res_proc = list(reversed(dec_res))
    dec_scale_proc = list(reversed(dec_scale))
    channels = v.get("decoder_base_channels", 128) * 8
    out_proc, factors, residual, types = [], [], [], []
    for name, params in dec_scale_proc:
        mult = params.get("multiplier", 1)
        extra = set(params) - {"multiplier", "residual"}
        if extra or (name != "compress_all" and params.get("residual", False)):
            raise v.refuse("decoder_blocks", [name, params], "only multiplier (and residual on compress_all)")
        out_proc.append(channels)
        factors.append(mult)
        residual.append(bool(params.get("residual", False)))
        types.append(_DECODER_UPSAMPLE[name])
        channels //= mult
    for i, params in enumerate(dec_res_proc):
        if set(params) - {"num_layers", "inject_noise"}:
            raise v.refuse("decoder_blocks", params, f"res_x block {i}: only num_layers and inject_noise")
    timestep_conditioning = bool(v.get("timestep_conditioning", True))
    return {
        "in_channels": v.get("in_channels", 3),
        "out_channels": v.get("out_channels", 3),
        "latent_channels": latent,
        "block_out_channels": tuple(enc_out),
        "down_block_types": ("LTX2VideoDownBlock3D",) * len(enc_out),
        "decoder_block_out_channels": tuple(reversed(out_proc)),
        "layers_per_block": tuple(p["num_layers"] for p in enc_res),
        "decoder_layers_per_block": tuple(reversed([p["num_layers"] for p in dec_res_proc])),
        "spatio_temporal_scaling": (True,) * len(enc_out),
        "decoder_spatio_temporal_scaling": (True,) * len(out_proc),
        "decoder_inject_noise": tuple(reversed([bool(p.get("inject_noise", False)) for p in dec_res_proc])),
        "downsample_type": tuple(_ENCODER_DOWNSAMPLE[name] for name, _ in enc_scale),
        "upsample_type": tuple(types),
        "upsample_residual": tuple(reversed(residual)),
        "upsample_factor": tuple(reversed(factors)),
        "timestep_conditioning": timestep_conditioning,
        "patch_size": v.get("patch_size", 4),
        "patch_size_t": 1,
        "resnet_norm_eps": 1e-6,
        "encoder_causal": True,
        "decoder_causal": bool(v.get("causal_decoder", False)),
        "encoder_spatial_padding_mode": padding or "zeros",
        "decoder_spatial_padding_mode": padding or "reflect",
        "spatial_compression_ratio": v.get("patch_size", 4) * _product(types, "spatial"),
        "temporal_compression_ratio": _product(types, "temporal"),
    }


def _product(types: list[str], axis: str) -> int:
    n = 1
    for kind in types:
        if kind == "spatiotemporal" or kind == axis:
            n *= 2
    return n


# --------------------------------------------------------------------------- audio VAE + vocoder


def _audio_vae(a: dict[str, Any], ignored: list[str]) -> dict[str, Any]:
    top = _Fields(a, "audio_vae")
    model = _Fields(top.get("model", {}), "audio_vae.model")
    params = _Fields(model.get("params", {}), "audio_vae.model.params")
    dd = _Fields(params.get("ddconfig", {}), "audio_vae.model.params.ddconfig")
    pre = _Fields(top.get("preprocessing", {}), "audio_vae.preprocessing")
    stft = _Fields(pre.get("stft", {}), "audio_vae.preprocessing.stft")
    mel = _Fields(pre.get("mel", {}), "audio_vae.preprocessing.mel")
    variables = _Fields(top.get("variables", {}), "audio_vae.variables")
    mel_bins = dd.get("mel_bins", None) or mel.get("n_mel_channels", None) or variables.get("mel_bins", None)
    dd.require("attn_type", "vanilla")
    dd.require("resamp_with_conv", True)
    attn = dd.get("attn_resolutions", [8, 16, 32])
    config = {
        "base_channels": dd.get("ch", 128),
        "output_channels": dd.get("out_ch", 2),
        "ch_mult": tuple(dd.get("ch_mult", (1, 2, 4))),
        "num_res_blocks": dd.get("num_res_blocks", 2),
        "attn_resolutions": tuple(attn) if attn else None,
        "in_channels": dd.get("in_channels", 2),
        "resolution": dd.get("resolution", 256),
        "latent_channels": dd.get("z_channels", 8),
        "norm_type": dd.get("norm_type", "pixel"),
        "causality_axis": dd.get("causality_axis", "height"),
        "dropout": dd.get("dropout", 0.0),
        "mid_block_add_attention": dd.get("mid_block_add_attention", True),
        "sample_rate": params.get("sampling_rate", 16000),
        "mel_hop_length": stft.get("hop_length", 160),
        "is_causal": stft.get("causal", True),
        "mel_bins": mel_bins,
        "double_z": dd.get("double_z", True),
    }
    stft.get("filter_length", 1024)  # the encoder's STFT (AudioProcessor): not part of the VAE weights
    for f in (top, model, params, dd, pre, stft, mel, variables):
        ignored.extend(k for k in f.unread() if k not in _NESTED)
    return config


_NESTED: Final = {
    "audio_vae.model",
    "audio_vae.preprocessing",
    "audio_vae.variables",
    "audio_vae.model.params",
    "audio_vae.model.params.ddconfig",
    "audio_vae.preprocessing.stft",
    "audio_vae.preprocessing.mel",
}


def _vocoder_fields(c: _Fields, expect_resblock: str, activation_default: str) -> dict[str, Any]:
    c.require("resblock", expect_resblock)
    c.require("stereo", True)
    activation = c.get("activation", activation_default)
    kernels = c.get("resblock_kernel_sizes", [3, 7, 11])
    return {
        "in_channels": 128,  # ltx-core's Vocoder: always 2 x 64 mel bins
        "hidden_channels": c.get("upsample_initial_channel", 1024),
        "out_channels": 2,
        "upsample_kernel_sizes": list(c.get("upsample_kernel_sizes", [16, 15, 8, 4, 4])),
        "upsample_factors": list(c.get("upsample_rates", [6, 5, 2, 2, 2])),
        "resnet_kernel_sizes": list(kernels),
        "resnet_dilations": [list(d) for d in c.get("resblock_dilation_sizes", [[1, 3, 5]] * len(kernels))],
        "_activation": activation,
        "_tanh": bool(c.get("use_tanh_at_final", True)),
        "_bias": bool(c.get("use_bias_at_final", True)),
    }


def _vocoder(cfg: dict[str, Any], ignored: list[str]) -> tuple[str, dict[str, Any]]:
    """(diffusers class name, config): ``LTX2Vocoder`` (LTX-2.0) or ``LTX2VocoderWithBWE`` (2.3)."""
    top = _Fields(cfg, "vocoder")
    if "bwe" not in cfg:
        f = _vocoder_fields(top, "1", "snake")
        # resblock "1" (HiFi-GAN ResBlock1) uses leaky ReLU whatever `activation` says
        config = {
            **{k: v for k, v in f.items() if not k.startswith("_")},
            "act_fn": "leaky_relu",
            "leaky_relu_negative_slope": 0.1,
            "final_act_fn": "tanh" if f["_tanh"] else "clamp",
            "final_bias": f["_bias"],
            "output_sampling_rate": top.get("output_sampling_rate", 24000),
        }
        ignored.extend(top.unread())
        return "LTX2Vocoder", config
    voc = _Fields(top.get("vocoder", {}), "vocoder.vocoder")
    bwe = _Fields(top.get("bwe", {}), "vocoder.bwe")
    base = _vocoder_fields(voc, "AMP1", "snake")
    ext = _vocoder_fields(bwe, "AMP1", "snake")
    for section, d in ((voc, base), (bwe, ext)):
        if d["_activation"] != "snakebeta":
            raise section.refuse("activation", d["_activation"], "LTX-2.3's vocoder is snakebeta")
    config = {
        **{k: v for k, v in base.items() if not k.startswith("_")},
        "act_fn": "snakebeta",
        "antialias": True,
        "final_act_fn": ("tanh" if base["_tanh"] else "clamp"),
        "final_bias": base["_bias"],
        **{f"bwe_{k}": v for k, v in ext.items() if not k.startswith("_")},
        "bwe_act_fn": "snakebeta",
        "bwe_antialias": True,
        "bwe_final_act_fn": None,
        "bwe_final_bias": ext["_bias"],
        "filter_length": bwe.get("n_fft", 512),
        "hop_length": bwe.get("hop_length", 80),
        "num_mel_channels": bwe.get("num_mels", 64),
        "input_sampling_rate": bwe.get("input_sampling_rate", 16000),
        "output_sampling_rate": bwe.get("output_sampling_rate", 48000),
    }
    voc.get("output_sampling_rate", None)
    ignored.extend(
        k for f in (top, voc, bwe) for k in f.unread() if k not in ("vocoder.vocoder", "vocoder.bwe")
    )
    return "LTX2VocoderWithBWE", config


# --------------------------------------------------------------------------- entry points


def translate(
    config: dict[str, Any], text_layers: int | None = None, text_hidden: int | None = None
) -> Translation:
    """diffusers configs for ``transformer``, ``connectors``, ``vae``, ``audio_vae``, ``vocoder``
    from a Lightricks checkpoint's embedded config (``ConfigError`` names a field that cannot be).

    ``text_layers`` / ``text_hidden``: the text encoder's hidden-state count and width, read from the
    connectors' projection weights (ltx-core takes them from its Gemma config, not from the file).
    """
    ignored: list[str] = []
    missing = [k for k in ("transformer", "vae", "audio_vae", "vocoder") if k not in config]
    if missing:
        raise ConfigError(f"embedded config has no {', '.join(missing)} section")
    t = _Fields(config["transformer"], "transformer")
    transformer, connectors = _transformer(t, text_layers, text_hidden)
    ignored.extend(t.unread())
    v = _Fields(config["vae"], "vae")
    vae = _vae(v)
    ignored.extend(v.unread())
    audio_vae = _audio_vae(config["audio_vae"], ignored)
    vocoder_class, vocoder = _vocoder(config["vocoder"], ignored)
    ignored.extend(k for k in config if k not in ("transformer", "vae", "audio_vae", "vocoder"))
    return Translation(
        {
            "transformer": transformer,
            "connectors": connectors,
            "vae": vae,
            "audio_vae": audio_vae,
            "vocoder": {"_class_name": vocoder_class, **vocoder},
        },
        sorted(ignored),
    )


def translate_upsampler(config: dict[str, Any]) -> Translation:
    """``LTX2LatentUpsamplerModel`` config from the spatial upscaler file's embedded config."""
    u = _Fields(config, "upsampler")
    scale = float(u.get("spatial_scale", 2.0))
    rational = bool(u.get("rational_resampler", False))
    out = {
        "in_channels": u.get("in_channels", 128),
        "mid_channels": u.get("mid_channels", 512),
        "num_blocks_per_stage": u.get("num_blocks_per_stage", 4),
        "dims": u.get("dims", 3),
        "spatial_upsample": bool(u.get("spatial_upsample", True)),
        "temporal_upsample": bool(u.get("temporal_upsample", False)),
        "rational_spatial_scale": scale,
        "use_rational_resampler": rational,
    }
    return Translation({"latent_upsampler": out}, u.unread())
