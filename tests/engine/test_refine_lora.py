"""The dev preset's two-stage refine with Lightricks' distilled LoRA (``TI2VidTwoStagesPipeline``),
on real tiny pipelines.

The LoRA is random, for every linear layer of the tiny transformer, and written in Lightricks' own
layout, as ``ltx-2-19b-distilled-lora-384.safetensors`` is: ``diffusion_model.<module>.lora_A`` /
``lora_B`` under their original module names, no alphas (``ltx_core`` fuses ``W + strength * B @ A``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, two_stage
from ltxserve.engine.checkpoints import CheckpointError
from ltxserve.engine.types import ModelSource
from ltxserve.presets import PRESETS, STAGE_2_SIGMAS

SCALE = 0.75  # not 1.0, so the strength is seen to reach the weights
RANK = 4
STEPS = 4
# 256x128 is above the tests' threshold (128x64): stage 1 at 128x64, 14 frames -> 17 generated.
JOB = GenerationJob(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=256,
    height=128,
    duration=2,
    fps=7,
    steps=STEPS,
    guidance=4.0,
    seeds=(3,),
)
HALF = replace(JOB, width=128, height=64)  # at the threshold: one stage


def lightricks_name(module: str) -> str:
    """A diffusers LTX-2.0 transformer module under Lightricks' name: the inverse of diffusers'
    ``_convert_non_diffusers_ltx2_lora_to_diffusers`` (the single-file mapping of test_checkpoints)."""
    module = re.sub(r"^audio_time_embed\.", "audio_adaln_single.", module)
    module = re.sub(r"^time_embed\.", "adaln_single.", module)
    module = re.sub(r"^audio_proj_in$", "audio_patchify_proj", module)
    module = re.sub(r"^proj_in$", "patchify_proj", module)
    for ours, theirs in (
        ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
        ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
        ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
        ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ):
        module = module.replace(ours, theirs)
    return f"diffusion_model.{module}"


def linear_modules(model_dir: Path) -> dict[str, tuple[int, int]]:
    """Every linear layer of the saved tiny transformer (diffusers name -> (out, in))."""
    with safe_open(str(model_dir / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118 (not a dict)
    return {
        k.removesuffix(".weight"): (s[0], s[1])
        for k, s in shapes.items()
        if k.endswith(".weight") and len(s) == 2
    }


def write_lightricks_lora(model_dir: Path, out: Path, extra: tuple[str, ...] = ()) -> Path:
    """A random bf16 LoRA of rank ``RANK`` on every linear layer, in Lightricks' key layout."""
    gen = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for module, (n_out, n_in) in linear_modules(model_dir).items():
        name = lightricks_name(module)
        tensors[f"{name}.lora_A.weight"] = (torch.randn(RANK, n_in, generator=gen) / n_in**0.5).bfloat16()
        tensors[f"{name}.lora_B.weight"] = (torch.randn(n_out, RANK, generator=gen) / RANK**0.5).bfloat16()
    for name in extra:
        tensors[f"{name}.lora_A.weight"] = torch.zeros(RANK, 8, dtype=torch.bfloat16)
        tensors[f"{name}.lora_B.weight"] = torch.zeros(8, RANK, dtype=torch.bfloat16)
    save_file(tensors, str(out))
    return out


@pytest.fixture(scope="module")
def lora_file(upsampler_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lightricks_lora(
        upsampler_model_dir, tmp_path_factory.mktemp("lora") / "distilled-lora.safetensors"
    )


def _settings(model_dir: Path, data_dir: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        model_path=str(model_dir),
        model_preset="dev",
        max_sequence_length=64,
        two_stage_above_pixels=128 * 64,  # two-stage above the tests' small size
        **extra,
    )


@pytest.fixture(scope="module")
def plain(upsampler_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """dev with an upsampler but no distilled LoRA."""
    return Engine.load(_settings(upsampler_model_dir, tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def dev(upsampler_model_dir: Path, lora_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """dev with an upsampler and the distilled LoRA."""
    return Engine.load(
        _settings(
            upsampler_model_dir,
            tmp_path_factory.mktemp("data"),
            distilled_lora_path=str(lora_file),
            distilled_lora_scale=SCALE,
        )
    )


def _adapter_on(engine: Engine) -> bool:
    layer = engine.t2v.transformer.transformer_blocks[0].attn1.to_q  # a PEFT layer once loaded
    return not getattr(layer, "disable_adapters", True)


@contextlib.contextmanager
def transformer_passes(engine: Engine) -> Iterator[list[dict[str, Any]]]:
    """Per transformer pass: batch rows, timestep, whether the LoRA was on, the video prediction."""
    calls: list[dict[str, Any]] = []

    def pre(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        calls.append(
            {
                "rows": int(kwargs["hidden_states"].shape[0]),
                "timestep": float(kwargs["timestep"].flatten()[0]),
                "lora": _adapter_on(engine),
            }
        )

    def post(_module: Any, _args: Any, _kwargs: dict[str, Any], out: Any) -> None:
        calls[-1]["video"] = out[0].detach().clone()

    transformer = engine.t2v.transformer
    handles = [
        transformer.register_forward_pre_hook(pre, with_kwargs=True),
        transformer.register_forward_hook(post, with_kwargs=True),
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


# --- loading -------------------------------------------------------------------------------------


def test_lightricks_layout_loads_onto_every_module_with_their_formula(
    dev: Engine, upsampler_model_dir: Path, lora_file: Path
) -> None:
    """diffusers' loader maps every Lightricks module name; on, a layer computes Lightricks' fused
    ``W + strength * B @ A`` (no alpha scaling); off, exactly its base layer."""
    from peft.tuners.lora import LoraLayer

    transformer = dev.t2v.transformer
    wrapped = {name for name, m in transformer.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == set(linear_modules(upsampler_model_dir))
    assert dev.distilled_lora
    assert dev.i2v.transformer is transformer  # one adapter for both pipelines

    layer = transformer.transformer_blocks[1].audio_to_video_attn.to_v
    key = "diffusion_model.transformer_blocks.1.audio_to_video_attn.to_v"
    with safe_open(str(lora_file), "pt") as f:
        a = f.get_tensor(f"{key}.lora_A.weight").float()
        b = f.get_tensor(f"{key}.lora_B.weight").float()
    x = torch.randn(5, layer.in_features, generator=torch.Generator().manual_seed(1))
    base = layer.base_layer
    with torch.no_grad():
        assert not _adapter_on(dev)
        assert torch.equal(layer(x), base(x))
        with two_stage.refine_weights(transformer, True):
            on = layer(x)
        assert not _adapter_on(dev)
        fused = torch.nn.functional.linear(x, base.weight + SCALE * b @ a, base.bias)
    assert torch.allclose(on, fused, atol=1e-5)
    assert not torch.allclose(on, base(x), atol=1e-3)


def test_a_lora_for_another_model_is_refused(
    plain: Engine, upsampler_model_dir: Path, tmp_path: Path
) -> None:
    """A module the transformer lacks is an error naming it (PEFT alone would only warn)."""
    bad = write_lightricks_lora(
        upsampler_model_dir, tmp_path / "other.safetensors", extra=("diffusion_model.no_such_block.proj",)
    )
    settings = plain.settings.model_copy(update={"distilled_lora_path": str(bad)})
    source = ModelSource(str(upsampler_model_dir), True)
    with pytest.raises(CheckpointError, match="no_such_block"):
        two_stage.load_refine_lora(settings, source, PRESETS["dev"], plain.t2v)
    assert not two_stage.has_refine_lora(plain.t2v.transformer)


def test_lora_is_loaded_only_where_two_stage_can_use_it(
    tiny_model_dir: Path, upsampler_model_dir: Path, lora_file: Path
) -> None:
    """Not for the distilled preset (its weights are distilled already), not without an upsampler,
    not with two_stage=off: each returns before touching the pipeline (None here)."""
    with_lora = Settings(distilled_lora_path=str(lora_file))
    up = ModelSource(str(upsampler_model_dir), True)
    assert not two_stage.load_refine_lora(with_lora, up, PRESETS["distilled"], None)
    assert not two_stage.load_refine_lora(
        with_lora, ModelSource(str(tiny_model_dir), True), PRESETS["dev"], None
    )
    off = with_lora.model_copy(update={"two_stage": "off"})
    assert not two_stage.load_refine_lora(off, up, PRESETS["dev"], None)
    assert not two_stage.load_refine_lora(Settings(), up, PRESETS["dev"], None)


# --- generation ----------------------------------------------------------------------------------


def test_without_the_lora_dev_stays_single_stage(plain: Engine) -> None:
    assert plain.upsampler is not None
    assert not plain.distilled_lora
    assert not plain.plan(JOB).two_stage


def test_dev_two_stage_with_the_lora(dev: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage 1 at half size with CFG and the LoRA off, x2 upsampling once, then 3 refine steps at
    full size on the stage-2 sigmas, without CFG and with the LoRA on; requested size and length."""
    plan = dev.plan(JOB)
    assert plan.two_stage
    assert plan.steps == STEPS + 3
    ups: list[tuple[int, ...]] = []
    handle = dev.upsampler.latent_upsampler.register_forward_hook(
        lambda _m, args, out: ups.append((*args[0].shape[-2:], *out.shape[-2:]))
    )
    seen: list[tuple[int, int]] = []
    try:
        with transformer_passes(dev) as calls:
            (result,) = dev.generate(JOB, progress=lambda i, n: seen.append((i, n)))
    finally:
        handle.remove()
    assert ups == [(2, 4, 4, 8)]
    assert [c["rows"] for c in calls] == [2] * STEPS + [1] * 3  # CFG in stage 1 only
    assert [c["lora"] for c in calls] == [False] * STEPS + [True] * 3
    assert [c["timestep"] for c in calls[STEPS:]] == pytest.approx(
        [s * 1000 for s in STAGE_2_SIGMAS], abs=1e-3
    )
    assert seen == [(i, STEPS + 3) for i in range(1, STEPS + 4)]
    assert result.frames.shape == (14, 128, 256, 3)
    assert result.audio is not None
    assert result.audio.shape == (2, 2 * dev.sample_rate)
    assert not _adapter_on(dev)

    monkeypatch.setattr(dev.settings, "two_stage", "off")
    assert not dev.plan(JOB).two_stage  # the setting still turns it off


def test_lora_is_off_outside_the_refine_stage(
    dev: Engine, plain: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 1 and single-stage jobs are bit-identical to an engine without the LoRA; stage 2
    differs with and without it (it is really applied)."""
    (single,) = dev.generate(HALF)
    (reference,) = plain.generate(HALF)
    assert np.array_equal(single.frames, reference.frames)
    assert single.audio is not None
    assert reference.audio is not None
    assert np.array_equal(single.audio, reference.audio)

    with transformer_passes(plain) as plain_calls:
        plain.generate(HALF)  # = stage 1 of JOB: same size, frames, seed and sampling
    with transformer_passes(dev) as with_lora:
        (refined,) = dev.generate(JOB)
    # the same job with the adapter left off in stage 2
    monkeypatch.setattr(two_stage, "refine_weights", lambda *_a: contextlib.nullcontext())
    with transformer_passes(dev) as without_lora:
        (unrefined,) = dev.generate(JOB)

    assert len(plain_calls) == STEPS
    for ours, theirs, off in zip(with_lora[:STEPS], plain_calls, without_lora[:STEPS], strict=True):
        assert torch.equal(ours["video"], theirs["video"])
        assert torch.equal(ours["video"], off["video"])
    assert not torch.allclose(with_lora[STEPS]["video"], without_lora[STEPS]["video"], atol=1e-4)
    assert not np.array_equal(refined.frames, unrefined.frames)


def test_image_to_video_refines_with_the_lora(dev: Engine) -> None:
    from PIL import Image

    job = replace(JOB, image=Image.new("RGB", (300, 200), (200, 30, 30)))
    with transformer_passes(dev) as calls:
        (result,) = dev.generate(job)
    assert [c["lora"] for c in calls] == [False] * STEPS + [True] * 3
    assert result.frames.shape == (14, 128, 256, 3)


def test_capacity_counts_the_refine_stage_without_guidance(dev: Engine) -> None:
    """Stage 1 guides a quarter of the tokens; the full-size refine runs one row per result."""
    from ltxserve.engine.capacity import estimate

    plan = dev.plan(JOB)
    guided = estimate(dev.shape, plan.frames, JOB.width, JOB.height, 1, cfg=True)
    unguided = estimate(dev.shape, plan.frames, JOB.width, JOB.height, 1, cfg=False)
    assert plan.estimate.denoise_bytes == unguided.denoise_bytes < guided.denoise_bytes
