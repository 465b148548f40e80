"""Lightricks' reference implementation (``ltx-core`` 1.0.0 from PyPI) as the parity suite uses it.

Tiny models are built with ltx-core's own configurators from a Lightricks-format config (the JSON
their release files embed), given seeded random weights, and written as Lightricks' single-file
releases lay them out: ltx-core's own key names under ``model.diffusion_model.``, ``vae.``,
``audio_vae.``, ``vocoder.``, ``text_embedding_projection.``, with the config in the safetensors
metadata (``config``). ltxserve then loads that file through its normal checkpoint path.

torchaudio: ltx-core imports it in one module, ``ltx_core.model.audio_vae.ops`` (``AudioProcessor``:
mel spectrogram and resampling, used only to *encode* audio). The torchaudio wheels on PyPI are
built against CUDA torch; next to the CPU torch of this project they fail to load, and once
installed they also break diffusers' LTX-2 import (diffusers imports torchaudio when present). So
ltx-core is installed with ``--no-deps`` (Makefile) and ``ltx_core.model.audio_vae`` is imported with
a placeholder ``torchaudio`` module that exists only during that import and raises on any use. No
torchaudio function runs in this suite (decode and vocoder do not use it); a test that touched it
would fail loudly. Where a real torchaudio is importable it is used instead.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def _import_audio_vae() -> Any:
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        placeholder = types.ModuleType("torchaudio")
        placeholder.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)

        def _unavailable(name: str) -> Any:
            raise ImportError(
                f"torchaudio.{name}: torchaudio is not installed (only ltx-core's audio encoder needs it)"
            )

        placeholder.__getattr__ = _unavailable  # type: ignore[method-assign]
        sys.modules["torchaudio"] = placeholder
        try:
            return importlib.import_module("ltx_core.model.audio_vae")
        finally:
            del sys.modules["torchaudio"]
    return importlib.import_module("ltx_core.model.audio_vae")


audio_vae = _import_audio_vae()

from ltx_core.model.transformer.model_configurator import LTXModelConfigurator  # noqa: E402
from ltx_core.model.upsampler.model_configurator import LatentUpsamplerConfigurator  # noqa: E402
from ltx_core.model.video_vae.model_configurator import (  # noqa: E402
    VideoDecoderConfigurator,
    VideoEncoderConfigurator,
)
from ltx_core.text_encoders.gemma.embeddings_connector import (  # noqa: E402
    AudioEmbeddings1DConnectorConfigurator,
    Embeddings1DConnectorConfigurator,
)
from ltx_core.text_encoders.gemma.embeddings_processor import EmbeddingsProcessor  # noqa: E402
from ltx_core.text_encoders.gemma.feature_extractor import FeatureExtractorV1  # noqa: E402

#: Text encoder the connectors expect: Gemma hidden width and hidden-state count (layers + 1), those
#: of ltxserve's tiny Gemma (engine.tiny), so the engine can run the file end to end. ltx-core sizes
#: its feature extractor from GEMMA3_CONFIG_FOR_LTX (3840 x 49); it is built at this size here.
TEXT_HIDDEN = 32
TEXT_STATES = 3

_FIXED = {
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
}

#: LTX-2.0's layout (19B: caption projection in the transformer, 2-layer connectors, split RoPE in
#: float64, compress_all decoder) shrunk: real compression ratios (x32 spatial, x8 temporal), tiny widths.
TINY_LTX20: dict[str, Any] = {
    "transformer": {
        **_FIXED,
        "num_attention_heads": 2,
        "attention_head_dim": 8,
        "in_channels": 8,
        "out_channels": 8,
        "num_layers": 2,
        "cross_attention_dim": 16,
        "caption_channels": TEXT_HIDDEN,
        "norm_eps": 1e-6,
        "audio_num_attention_heads": 2,
        "audio_attention_head_dim": 4,
        "audio_in_channels": 128,  # 8 latent channels x 16 latent mel bins, fixed by ltx-pipelines
        "audio_out_channels": 128,
        "audio_cross_attention_dim": 8,
        "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000,
        "rope_type": "split",
        "frequencies_precision": "float64",
        "connector_num_attention_heads": 2,
        "connector_attention_head_dim": 16,
        "connector_num_layers": 2,
        "connector_positional_embedding_max_pos": [4096],
    },
    "vae": {
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 8,
        "patch_size": 4,
        "decoder_base_channels": 8,
        "causal_decoder": False,
        "timestep_conditioning": False,
        "norm_layer": "pixel_norm",
        "latent_log_var": "uniform",
        "encoder_blocks": [
            ["res_x", {"num_layers": 1}],
            ["compress_space_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_time_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_all_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_all_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
        ],
        "decoder_blocks": [
            ["res_x", {"num_layers": 1, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1, "inject_noise": False}],
        ],
    },
    "audio_vae": {
        "model": {
            "params": {
                "sampling_rate": 16000,
                "ddconfig": {
                    "ch": 128,  # = its latent statistics, one per patchified channel (8 x 16)
                    "out_ch": 2,
                    "ch_mult": [1, 1, 1],
                    "num_res_blocks": 1,
                    "attn_resolutions": [],
                    "resolution": 256,
                    "z_channels": 8,
                    "norm_type": "pixel",
                    "causality_axis": "height",
                    "dropout": 0.0,
                    "mid_block_add_attention": False,
                    "mel_bins": 64,
                    "in_channels": 2,
                    "double_z": True,
                },
            }
        },
        "preprocessing": {"stft": {"hop_length": 160, "filter_length": 1024, "causal": True}},
    },
    # ltx-core's Vocoder always takes 2 x 64 mel bins (128 channels)
    "vocoder": {
        "resblock": "1",
        "stereo": True,
        "upsample_initial_channel": 32,
        "upsample_rates": [6, 5, 8],
        "upsample_kernel_sizes": [12, 11, 16],
        "resblock_kernel_sizes": [3, 7],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
        "output_sampling_rate": 24000,
    },
}

TINY_UPSAMPLER: dict[str, Any] = {
    "in_channels": 8,
    "mid_channels": 32,
    "num_blocks_per_stage": 1,
    "dims": 3,
    "spatial_upsample": True,
    "temporal_upsample": False,
    "spatial_scale": 2.0,
    "rational_resampler": False,
}


def randomize(module: torch.nn.Module, seed: int, fan_in: bool = False) -> torch.nn.Module:
    """Seeded random values for every parameter and persistent float buffer (constructors leave
    some at zero or on the meta device: a zero weight would hide a wrong mapping). ``fan_in``
    scales weights by all their input dimensions (deep conv stacks such as the vocoders would
    otherwise saturate their output activation, which would hide differences)."""
    g = torch.Generator().manual_seed(seed)
    for mod in module.modules():
        for name, p in list(mod.named_parameters(recurse=False)):
            inputs = p.shape[1:].numel() if fan_in else p.shape[-1]
            scale = inputs**-0.5 if p.dim() > 1 else 0.1
            setattr(
                mod, name, torch.nn.Parameter(torch.randn(p.shape, generator=g) * scale, requires_grad=False)
            )
        for name, b in list(mod.named_buffers(recurse=False)):
            if b.is_floating_point() and name not in mod._non_persistent_buffers_set:
                std = "std" in name
                value = (
                    torch.rand(b.shape, generator=g) + 0.5 if std else torch.randn(b.shape, generator=g) * 0.1
                )
                mod._buffers[name] = value
    return module.eval()


class Reference:
    """The ltx-core modules of one tiny model (the reference side of every comparison)."""

    def __init__(self, config: dict[str, Any], seed: int = 0) -> None:
        self.config = config
        self.transformer = randomize(LTXModelConfigurator.from_config(config), seed + 1)
        self.decoder = randomize(VideoDecoderConfigurator.from_config(config), seed + 2)
        self.encoder = randomize(VideoEncoderConfigurator.from_config(config), seed + 3)
        # one set of latent statistics in a release file (vae.per_channel_statistics.*)
        self.encoder.per_channel_statistics.load_state_dict(self.decoder.per_channel_statistics.state_dict())
        self.audio_decoder = randomize(audio_vae.AudioDecoderConfigurator.from_config(config), seed + 4)
        self.audio_encoder = randomize(audio_vae.AudioEncoderConfigurator.from_config(config), seed + 5)
        self.audio_encoder.per_channel_statistics.load_state_dict(
            self.audio_decoder.per_channel_statistics.state_dict()
        )
        self.vocoder = randomize(audio_vae.VocoderConfigurator.from_config(config), seed + 6, fan_in=True)
        extractor = FeatureExtractorV1(
            aggregate_embed=torch.nn.Linear(TEXT_HIDDEN * TEXT_STATES, TEXT_HIDDEN, bias=False), is_av=True
        )
        self.embeddings = randomize(
            EmbeddingsProcessor(
                video_connector=Embeddings1DConnectorConfigurator.from_config(config),
                audio_connector=AudioEmbeddings1DConnectorConfigurator.from_config(config),
                feature_extractor=extractor,
            ),
            seed + 7,
        )

    def release_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under the key names of Lightricks' release files (the inverse of ltx-core's
        own loading ops: LTXV_MODEL_COMFY_RENAMING_MAP, VAE_*_COMFY_KEYS_FILTER, ...)."""
        out: dict[str, torch.Tensor] = {}
        for k, v in self.transformer.state_dict().items():
            out[f"model.diffusion_model.{k}"] = v
        for k, v in self.embeddings.state_dict().items():
            k = k.replace("feature_extractor.aggregate_embed.", "text_embedding_projection.aggregate_embed.")
            k = k.replace("video_connector.", "model.diffusion_model.video_embeddings_connector.", 1)
            k = k.replace("audio_connector.", "model.diffusion_model.audio_embeddings_connector.", 1)
            out[k] = v
        for prefix, module in (
            ("vae.decoder.", self.decoder),
            ("vae.encoder.", self.encoder),
            ("audio_vae.decoder.", self.audio_decoder),
            ("audio_vae.encoder.", self.audio_encoder),
        ):
            stats = prefix.split(".")[0] + ".per_channel_statistics."
            for k, v in module.state_dict().items():
                out[
                    stats + k.removeprefix("per_channel_statistics.")
                    if k.startswith("per_channel")
                    else prefix + k
                ] = v
        for k, v in self.vocoder.state_dict().items():
            out[f"vocoder.{k}"] = v
        return {k: v.contiguous() for k, v in out.items()}

    def save(self, path: Path) -> Path:
        save_file(self.release_state_dict(), str(path), metadata={"config": json.dumps(self.config)})
        return path


def build_upsampler(config: dict[str, Any] = TINY_UPSAMPLER, seed: int = 11) -> torch.nn.Module:
    return randomize(LatentUpsamplerConfigurator.from_config(config), seed)


def save_upsampler(module: torch.nn.Module, config: dict[str, Any], path: Path) -> Path:
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(config)})
    return path


def errors(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max absolute error, max absolute error / max |reference|)."""
    diff = (ours.double() - ref.double()).abs().max().item()
    return diff, diff / max(ref.double().abs().max().item(), 1e-12)


#: LTX-2.3's layout (22B: text projections in the connectors (FeatureExtractorV2), gated attention,
#: prompt cross-attention modulation, the compress_space/compress_time decoder with zeros padding,
#: a BigVGAN vocoder with a bandwidth-extension generator to 48 kHz) shrunk; fields as in the
#: ltx-2.3-22b-*.safetensors metadata (ltx-core's configurators read them).
TINY_LTX23: dict[str, Any] = {
    **TINY_LTX20,
    "transformer": {
        **TINY_LTX20["transformer"],
        "caption_proj_before_connector": True,
        "caption_projection_first_linear": False,
        "caption_proj_input_norm": False,
        "caption_projection_second_linear": False,
        "apply_gated_attention": True,
        "cross_attention_adaln": True,
        "connector_apply_gated_attention": True,
        "connector_num_attention_heads": 2,
        "connector_attention_head_dim": 8,  # = the video transformer width (16)
        "audio_connector_num_attention_heads": 2,
        "audio_connector_attention_head_dim": 4,  # = the audio transformer width (8)
    },
    "vae": {
        **TINY_LTX20["vae"],
        "spatial_padding_mode": "zeros",
        "decoder_blocks": [
            ["res_x", {"num_layers": 1}],
            ["compress_space", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_time", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"multiplier": 1}],
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
        ],
    },
    "vocoder": {
        "vocoder": {
            "resblock": "AMP1",
            "stereo": True,
            "activation": "snakebeta",
            "upsample_initial_channel": 128,  # halved per stage: 6 stages leave 2 channels
            "upsample_rates": [5, 2, 2, 2, 2, 2],
            "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4],
            "resblock_kernel_sizes": [3, 7],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
            "use_tanh_at_final": False,
            "use_bias_at_final": False,
        },
        "bwe": {
            "resblock": "AMP1",
            "stereo": True,
            "activation": "snakebeta",
            "upsample_initial_channel": 64,
            "upsample_rates": [6, 5, 2, 2, 2],
            "upsample_kernel_sizes": [12, 11, 4, 4, 4],
            "resblock_kernel_sizes": [3, 7],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
            "input_sampling_rate": 16000,
            "output_sampling_rate": 48000,
            "hop_length": 80,
            "n_fft": 512,
            "num_mels": 64,
            "use_bias_at_final": False,
        },
    },
}


class Reference23(Reference):
    """LTX-2.3: the text features are projected per modality before the connectors."""

    def __init__(self, config: dict[str, Any] = TINY_LTX23, seed: int = 30) -> None:
        from ltx_core.text_encoders.gemma.feature_extractor import FeatureExtractorV2

        super().__init__(config, seed)
        with torch.no_grad():  # the BWE residual adds to the base output: keep the sum inside the clamp
            self.vocoder.bwe_generator.conv_post.weight.mul_(0.1)
        t = config["transformer"]
        extractor = FeatureExtractorV2(
            video_aggregate_embed=torch.nn.Linear(
                TEXT_HIDDEN * TEXT_STATES, t["num_attention_heads"] * t["attention_head_dim"], bias=True
            ),
            embedding_dim=TEXT_HIDDEN,
            audio_aggregate_embed=torch.nn.Linear(
                TEXT_HIDDEN * TEXT_STATES,
                t["audio_num_attention_heads"] * t["audio_attention_head_dim"],
                bias=True,
            ),
        )
        self.embeddings = randomize(
            EmbeddingsProcessor(
                video_connector=Embeddings1DConnectorConfigurator.from_config(config),
                audio_connector=AudioEmbeddings1DConnectorConfigurator.from_config(config),
                feature_extractor=extractor,
            ),
            seed + 7,
        )

    def release_state_dict(self) -> dict[str, torch.Tensor]:
        renamed = {}
        for k, v in super().release_state_dict().items():
            renamed[k.replace("feature_extractor.", "text_embedding_projection.")] = v
        return renamed
