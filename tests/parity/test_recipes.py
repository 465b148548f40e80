"""Lightricks' reference recipes by default: a model directory laid out as Lightricks ships it runs
dev two-stage with the distilled LoRA; the recipe is stated; guidance without a negative prompt uses
DEFAULT_NEGATIVE_PROMPT."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from ltx_pipelines.utils import constants
from safetensors.torch import save_file

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob
from ltxserve.engine.engine import negative_prompt
from ltxserve.engine.two_stage import shipped_parts
from tests.parity.conftest import Converted
from tests.parity.reference import TINY_UPSAMPLER, build_upsampler, save_upsampler


def _lightricks_dir(ltx20: Converted, root: Path) -> Path:
    """ltx-2-19b-dev + its distilled LoRA + the x2 spatial upscaler, named as on the hub."""
    root.mkdir(parents=True, exist_ok=True)
    checkpoint = root / "ltx-2-19b-dev.safetensors"
    shutil.copy(ltx20.checkpoint, checkpoint)
    g = torch.Generator().manual_seed(2)
    module = "diffusion_model.transformer_blocks.0.attn1.to_q"  # Lightricks' LoRA layout
    save_file(
        {
            f"{module}.lora_A.weight": torch.randn(2, 16, generator=g),
            f"{module}.lora_B.weight": torch.randn(16, 2, generator=g),
        },
        str(root / "ltx-2-19b-distilled-lora-384.safetensors"),
    )
    save_upsampler(build_upsampler(), TINY_UPSAMPLER, root / "ltx-2-spatial-upscaler-x2-1.0.safetensors")
    return checkpoint


def test_shipped_parts_are_found_by_family(ltx20: Converted, tmp_path: Path) -> None:
    checkpoint = _lightricks_dir(ltx20, tmp_path / "models")
    # other families and fp8 files next to it are not picked
    (tmp_path / "models" / "ltx-2.3-spatial-upscaler-x2-1.0.safetensors").write_bytes(b"")
    (tmp_path / "models" / "ltx-2-19b-distilled-lora-384-fp8.safetensors").write_bytes(b"")
    lora, upsampler = shipped_parts(str(checkpoint))
    assert lora is not None
    assert lora.name == "ltx-2-19b-distilled-lora-384.safetensors"
    assert upsampler is not None
    assert upsampler.name == "ltx-2-spatial-upscaler-x2-1.0.safetensors"
    assert shipped_parts(str(tmp_path / "models")) == (None, None)  # a directory, not a release file


def test_dev_in_lightricks_layout_runs_two_stage_by_default(
    ltx20: Converted, tiny_model_dir: Path, tmp_path: Path
) -> None:
    checkpoint = _lightricks_dir(ltx20, tmp_path / "models")
    engine = Engine.load(
        Settings(
            data_dir=tmp_path / "data",
            model_path=str(checkpoint),  # preset "auto": dev, from the name
            text_encoder_path=str(tiny_model_dir),
            max_sequence_length=128,
            two_stage_above_pixels=64 * 64,
        )
    )
    assert engine.preset.name == "dev"
    assert engine.distilled_lora
    assert engine.upsampler is not None
    assert "two-stage" in engine.recipe()
    assert "distilled LoRA" in engine.recipe()
    job = GenerationJob(
        prompt="a kite", width=128, height=128, duration=1, fps=9, steps=3, guidance=3.0, seeds=(1,)
    )
    run = engine.plan(job)
    assert run.two_stage
    line = engine.job_recipe(job, run)
    assert "stage 1 at 64x64" in line
    assert "LTX2Scheduler" in line
    assert "DEFAULT_NEGATIVE_PROMPT" in line
    (result,) = engine.generate(job)
    assert result.frames.shape == (9, 128, 128, 3)


@pytest.mark.parametrize(
    ("given", "cfg", "expected"), [("", True, None), ("", False, ""), ("grainy", True, "grainy")]
)
def test_negative_prompt_defaults_to_lightricks(given: str, cfg: bool, expected: str | None) -> None:
    job = GenerationJob(
        prompt="p",
        negative_prompt=given,
        width=64,
        height=64,
        duration=1,
        fps=9,
        steps=2,
        guidance=3.0,
        seeds=(1,),
    )
    assert negative_prompt(job, cfg) == (constants.DEFAULT_NEGATIVE_PROMPT if expected is None else expected)
