"""Lightricks single-file checkpoints: written here from the tiny diffusers model through the inverse
of diffusers' key mapping, then loaded the way a real ``ltx-2-19b-*.safetensors`` is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, checkpoints
from ltxserve.engine.checkpoints import CheckpointError, prepare_single_file

JOB = GenerationJob(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=128,
    height=64,
    duration=1,
    fps=12,
    steps=2,
    guidance=3.0,
    seeds=(5,),
)
COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder")


def _replace_all(key: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        key = key.replace(old, new)
    return key


def _vae_to_lightricks(key: str) -> str:
    """Inverse of diffusers' LTX_2_0_VIDEO_VAE_RENAME_DICT: (down|up)samplers become their own blocks."""

    def down(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"encoder.down_blocks.{2 * i + 1}." if m.group(2) else f"encoder.down_blocks.{2 * i}."

    def up(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"decoder.up_blocks.{2 * i + 1}." if m.group(2) else f"decoder.up_blocks.{2 * i + 2}."

    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.(downsamplers\.0\.)?", down, key)
    key = re.sub(r"^decoder\.up_blocks\.(\d+)\.(upsamplers\.0\.)?", up, key)
    key = key.replace("encoder.mid_block.", "encoder.down_blocks.8.")
    key = key.replace("decoder.mid_block.", "decoder.up_blocks.0.")
    key = key.replace("resnets", "res_blocks")
    return "vae." + _statistics(key)


def _statistics(key: str) -> str:
    return _replace_all(
        key,
        [
            ("latents_mean", "per_channel_statistics.mean-of-means"),
            ("latents_std", "per_channel_statistics.std-of-means"),
        ],
    )


def _transformer_to_lightricks(key: str) -> str:
    key = re.sub(r"^audio_time_embed\.", "audio_adaln_single.", key)
    key = re.sub(r"^time_embed\.", "adaln_single.", key)
    key = _replace_all(
        key,
        [
            ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
            ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
            ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
            ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
            ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
            ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
            ("norm_q", "q_norm"),
            ("norm_k", "k_norm"),
            ("audio_proj_in", "audio_patchify_proj"),
        ],
    )
    key = re.sub(r"^proj_in\.", "patchify_proj.", key)
    return "model.diffusion_model." + key


def _connectors_to_lightricks(key: str) -> str:
    if key.startswith("text_proj_in."):
        return key.replace("text_proj_in", "text_embedding_projection.aggregate_embed")
    key = _replace_all(
        key,
        [
            ("video_connector", "video_embeddings_connector"),
            ("audio_connector", "audio_embeddings_connector"),
            ("transformer_blocks", "transformer_1d_blocks"),
            ("norm_q", "q_norm"),
            ("norm_k", "k_norm"),
        ],
    )
    return "model.diffusion_model." + key


def _vocoder_to_lightricks(key: str) -> str:
    pairs = [
        ("upsamplers", "ups"),
        ("resnets", "resblocks"),
        ("conv_in", "conv_pre"),
        ("conv_out", "conv_post"),
    ]
    return "vocoder." + _replace_all(key, pairs)


TO_LIGHTRICKS = {
    "transformer": _transformer_to_lightricks,
    "connectors": _connectors_to_lightricks,
    "vae": _vae_to_lightricks,
    "audio_vae": lambda k: "audio_vae." + _statistics(k),
    "vocoder": _vocoder_to_lightricks,
}


def _diffusers_state(model_dir: Path, component: str) -> dict[str, torch.Tensor]:
    with safe_open(str(model_dir / component / "diffusion_pytorch_model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)


def lightricks_state(model_dir: Path) -> dict[str, torch.Tensor]:
    """The tiny model's weights under Lightricks' single-file key names."""
    out: dict[str, torch.Tensor] = {}
    for component in COMPONENTS:
        for key, value in _diffusers_state(model_dir, component).items():
            out[TO_LIGHTRICKS[component](key)] = value.contiguous()
    # Statistics the real file carries and diffusers drops.
    channels = out["vae.per_channel_statistics.mean-of-means"].shape[0]
    out["vae.per_channel_statistics.channel"] = torch.arange(channels, dtype=torch.float32)
    out["vae.per_channel_statistics.mean-of-stds"] = torch.ones(channels)
    return out


@pytest.fixture(scope="module")
def single_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "ltx-2-19b-dev-tiny.safetensors"
    save_file(lightricks_state(tiny_model_dir), str(path))
    return path


def test_inverse_layout_round_trips_through_diffusers_conversion(
    tiny_model_dir: Path, single_file: Path
) -> None:
    """The test file's layout is what diffusers' conversion functions take (else the test proves nothing)."""
    groups = checkpoints._split_keys(single_file)
    converters = checkpoints._converters()
    with safe_open(str(single_file), "pt") as f:
        for component in COMPONENTS:
            original = {k: f.get_tensor(k) for k in groups[component]}
            converted = converters[component][1](original)
            expected = _diffusers_state(tiny_model_dir, component)
            assert sorted(converted) == sorted(expected), component
            assert all(torch.equal(converted[k], expected[k]) for k in expected), component


@pytest.fixture(scope="module")
def single_file_settings(
    single_file: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        model_path=str(single_file),
        text_encoder_path=str(tiny_model_dir),  # a diffusers directory: text_encoder/, tokenizer/
        single_file_config=str(tiny_model_dir),  # the tiny model's component configs
        max_sequence_length=64,
    )


def test_single_file_and_diffusers_directory_give_identical_outputs(
    engine: Engine, single_file_settings: Settings
) -> None:
    single = Engine.load(single_file_settings)
    assert single.source.checkpoint == single_file_settings.model_path
    (a,) = single.generate(JOB)
    (b,) = engine.generate(JOB)
    assert np.array_equal(a.frames, b.frames)
    assert a.audio is not None
    assert b.audio is not None
    assert np.array_equal(a.audio, b.audio)


def test_conversion_is_cached_on_disk(
    single_file_settings: Settings, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    device = torch.device("cpu")
    args = (single_file_settings.data_dir, device, str(tiny_model_dir))
    first = prepare_single_file(str(single_file_settings.model_path), str(tiny_model_dir), *args)
    assert (first.converted / checkpoints.MARKER_FILE).is_file()
    assert first.converted.parent == single_file_settings.data_dir / "converted"

    def no_conversion(*_a: Any, **_k: Any) -> Path:
        raise AssertionError("converted again although the checkpoint did not change")

    monkeypatch.setattr(checkpoints, "convert_single_file", no_conversion)
    again = prepare_single_file(str(single_file_settings.model_path), str(tiny_model_dir), *args)
    assert again.converted == first.converted


def test_changed_checkpoint_is_converted_again(
    single_file: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    copy = tmp_path / single_file.name
    copy.write_bytes(single_file.read_bytes())
    before = checkpoints.converted_location(copy, tmp_path, str(tiny_model_dir))
    state = lightricks_state(tiny_model_dir)
    state["vocoder.conv_post.bias"] = state["vocoder.conv_post.bias"] + 1.0
    save_file(state, str(copy))
    assert checkpoints.converted_location(copy, tmp_path, str(tiny_model_dir)) != before


def test_fp8_checkpoint_refused_on_cpu_before_any_work(tiny_model_dir: Path, tmp_path: Path) -> None:
    state = lightricks_state(tiny_model_dir)
    key = "model.diffusion_model.transformer_blocks.0.attn1.to_q.weight"
    state[key] = state[key].to(torch.float8_e4m3fn)
    path = tmp_path / "ltx-2-19b-distilled-fp8.safetensors"
    save_file(state, str(path))
    assert checkpoints.is_fp8_checkpoint(path)
    settings = Settings(
        data_dir=tmp_path / "data",
        model_path=str(path),
        text_encoder_path=str(tiny_model_dir),
        single_file_config=str(tiny_model_dir),
        device="cpu",
    )
    with pytest.raises(CheckpointError, match=r"FP8 checkpoint.*needs a CUDA GPU.*runs on cpu"):
        Engine.load(settings)
    assert not (tmp_path / "data" / "converted").exists()


def test_single_file_without_text_encoder_is_refused_clearly(single_file: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="LTXSERVE_TEXT_ENCODER_PATH"):
        prepare_single_file(str(single_file), None, tmp_path, torch.device("cpu"))


def test_mismatched_checkpoint_names_the_keys(tiny_model_dir: Path, tmp_path: Path) -> None:
    state = lightricks_state(tiny_model_dir)
    del state["vocoder.conv_post.bias"]
    path = tmp_path / "ltx-2-19b-dev.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"vocoder.*missing 1: \['conv_out.bias'\]"):
        checkpoints.convert_single_file(path, tmp_path / "out", str(tiny_model_dir))
    assert not (tmp_path / "out").exists()


def test_bundled_ltx2_configs_fit_the_full_size_layout() -> None:
    """The bundled configs build the 19B model of the notes (on the meta device: nothing allocated)."""
    from accelerate import init_empty_weights

    sizes = {}
    for name, (cls, _) in checkpoints._converters().items():
        with init_empty_weights():
            model = cls.from_config(checkpoints.LTX2_0_CONFIGS[name])
        sizes[name] = sum(p.numel() for p in model.parameters())
    assert 18.8e9 < sizes["transformer"] < 19.0e9
    assert 1.2e9 < sizes["vae"] < 1.25e9


def test_single_file_latent_upsampler_loads_strictly(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Lightricks' ltx-2-spatial-upscaler-x2-*.safetensors carries diffusers' key names."""
    from ltxserve.engine import two_stage
    from ltxserve.engine.tiny import build_tiny_upsampler

    model = build_tiny_upsampler()
    model.save_pretrained(tmp_path / "cfg" / two_stage.UPSAMPLER_SUBFOLDER)
    path = tmp_path / "ltx-2-spatial-upscaler-x2-1.0.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = two_stage._load_single_file(path, str(tmp_path / "cfg"), torch.float32)
    x = torch.randn(1, model.config.in_channels, 2, 3, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    state = model.state_dict()
    state.pop("final_conv.bias")
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError, match=r"final_conv\.bias"):
        two_stage._load_single_file(path, str(tmp_path / "cfg"), torch.float32)


def test_fp8_weights_come_back_bit_for_bit(tiny_model_dir: Path) -> None:
    """The CUDA path's mechanics, on CPU: from_pretrained upcasts the checkpoint's float8 weights,
    keep_fp8 stores them in float8 again; float8 -> wider -> float8 loses nothing."""
    from diffusers import LTX2VideoTransformer3DModel

    transformer = LTX2VideoTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    layer = transformer.transformer_blocks[0].attn1.to_q
    original = layer.weight.data.to(torch.float8_e4m3fn)
    layer.weight.data = original.to(torch.float32)  # what loading an fp8 file with dtype=float32 does
    checkpoints.keep_fp8(transformer, torch.float32)
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert torch.equal(layer.weight.data.view(torch.uint8), original.view(torch.uint8))
