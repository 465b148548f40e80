"""LTX-2.3 served through the same engine: the tiny random-weight 2.3 model (it outputs noise) built
from diffusers' real 2.3 classes, its presets, model ids and guidance as Lightricks sets it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, recipe
from ltxserve.engine.tiny import PRESETS as TINY_PRESETS
from ltxserve.engine.tiny import save_tiny_model
from ltxserve.presets import LTX23_AUDIO, LTX23_VIDEO, PRESETS, detect_preset_name
from ltxserve.protocol import ValidationContext, parse_task

JOB = GenerationJob(
    prompt="a lighthouse at dusk",
    negative_prompt="",
    width=128,
    height=64,
    duration=1,
    fps=12,
    steps=3,
    guidance=3.0,
    seeds=(5,),
)


@pytest.fixture(scope="module")
def ltx23(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    # Named as Lightricks names 2.3 files, so the preset is detected (auto), not configured.
    path = save_tiny_model(tmp_path_factory.mktemp("models") / "ltx-2.3-22b-tiny", preset="tiny-2.3")
    return Engine.load(
        Settings(data_dir=tmp_path_factory.mktemp("data"), model_path=str(path), max_sequence_length=64)
    )


def test_tiny_23_is_built_from_the_23_classes(ltx23: Engine) -> None:
    pipe = ltx23.t2v
    assert ltx23.preset.name == "2.3-dev"
    assert type(pipe.vocoder).__name__ == "LTX2VocoderWithBWE"
    assert pipe.transformer.config.gated_attn
    assert pipe.transformer.config.cross_attn_mod
    assert not pipe.transformer.config.use_prompt_embeddings
    assert pipe.transformer.config.perturbed_attn  # else diffusers ignores STG
    assert pipe.connectors.config.per_modality_projections
    assert "temporal" in pipe.vae.config.upsample_type
    assert pipe.vae.config.decoder_spatial_padding_mode == "zeros"
    assert TINY_PRESETS["tiny-2.3"].family == "2.3"


def test_ltx23_generates_video_and_48k_audio_with_its_guidance(ltx23: Engine) -> None:
    seen: list[dict[str, Any]] = []
    original = type(ltx23.t2v).__call__

    def spy(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(pipe, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(ltx23.t2v), "__call__", spy)
        (result,) = ltx23.generate(JOB)
    call = seen[0]
    assert call["guidance_scale"] == 3.0
    assert call["audio_guidance_scale"] == LTX23_AUDIO.cfg == 7.0
    assert call["stg_scale"] == LTX23_VIDEO.stg
    assert call["spatio_temporal_guidance_blocks"] == [28]
    assert call["guidance_rescale"] == 0.7
    assert call["modality_scale"] == 3.0
    assert call["use_cross_timestep"] is True
    assert "negative_prompt_embeds" in call  # Lightricks' default negative prompt under CFG
    assert result.frames.shape == (12, 64, 128, 3)
    assert result.sample_rate == 48000
    assert result.audio is not None
    assert result.audio.shape == (2, 48000)
    run = PRESETS["2.3-dev"].sampling(3, 3.0)
    assert run.passes == 4  # CFG pair, STG, modality isolation: what the ETA counts
    assert "STG 1 at blocks [28]" in recipe.job(ltx23.preset, JOB, run, two_stage=False)
    # CFGScale <= 1 turns every guidance term off: one pass per step
    unguided = PRESETS["2.3-dev"].sampling(3, 1.0)
    assert not unguided.cfg
    assert unguided.kwargs["stg_scale"] == 0.0
    assert unguided.kwargs["modality_scale"] == 1.0
    assert unguided.kwargs["audio_guidance_scale"] == 1.0
    (again,) = ltx23.generate(replace(JOB, guidance=1.0))
    assert again.frames.shape == result.frames.shape


@pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("/models/ltx-2.3-22b-dev.safetensors", "2.3-dev"),
        ("/models/ltx-2.3-22b-distilled.safetensors", "2.3-distilled"),
        ("Lightricks/LTX-2.3", "2.3-dev"),
        ("/models/ltx-2-19b-dev.safetensors", "dev"),
    ],
)
def test_ltx23_preset_detected_from_checkpoint_name(name: str, preset: str) -> None:
    assert detect_preset_name(name) == preset


def test_ltx23_model_ids_are_runwares() -> None:
    def accepted(settings: Settings, model: str) -> bool:
        raw = {"taskType": "videoInference", "taskUUID": "6ad1a9d4-3d3e-4a47-9d0e-4c4cc6a4a001"}
        task, errors = parse_task(
            {**raw, "model": model, "positivePrompt": "x"}, ValidationContext.from_settings(settings)
        )
        return not errors and task is not None

    dev = Settings(model_path="/models/ltx-2.3-22b-dev.safetensors")
    assert accepted(dev, "lightricks:ltx@2.3")
    assert not accepted(dev, "lightricks:ltx@2")
    fast = Settings(model_path="/models/ltx-2.3-22b-distilled.safetensors")
    assert accepted(fast, "lightricks:ltx@2.3-fast")
    assert not accepted(fast, "lightricks:ltx@2.3")
    assert PRESETS["2.3-distilled"].sampling(30, 3.0).steps == 8
    assert accepted(Settings(), "lightricks:ltx@2")  # LTX-2.0 stays the default
