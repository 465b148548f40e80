"""One job over 2 CPU processes with gloo equals the single-process result (tiny model: noise).

Each run starts real ranks (``tests/parallel/ranks.py`` as rank 0, which starts rank 1 with the
launcher ``ltxserve worker --gpus N`` uses) on a tiny LTX-2 whose text connectors have learnable
registers like the real model's, and compares frames and audio with ``Engine`` in this process.
Measured here: frames differ by at most 1/255 (a rounding flip of float sums reordered by the
split), audio by ~1e-7.

What gloo cannot run, and where it is covered instead:
* ring attention: diffusers has no CPU attention kernel that returns the log-sum-exp ring needs
  (its ``_native_flash`` is CUDA-only); refused on CPU (``test_layouts``), GPU only (bench/gpu.py).
* sequences that do not split evenly: diffusers' uneven split gathers unequal shards, which NCCL
  does and gloo does not; refused with that reason (the ``uneven`` job below), GPU only.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob
from ltxserve.engine.parallel import Layout, choose_layout
from ltxserve.engine.tiny import TinyModelConfig, save_tiny_model

RANKS_SCRIPT = Path(__file__).with_name("ranks.py")
FRAME_TOLERANCE = 1  # uint8 levels
AUDIO_TOLERANCE = 1e-5

JOB = GenerationJob(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=64,
    height=64,
    duration=1,
    fps=12,
    steps=3,
    guidance=4.0,
    seeds=(3,),
)
IMAGE = Image.new("RGB", (96, 64), (255, 0, 0))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny-ltx2-cp",
        upsampler=True,
        config=TinyModelConfig(text_registers=16),
    )


def _settings(model_dir: Path, data_dir: Path, **extra: Any) -> dict[str, str]:
    return {
        "model_path": str(model_dir),
        "data_dir": str(data_dir),
        "device": "cpu",
        "max_sequence_length": "64",
        **{k: str(v) for k, v in extra.items()},
    }


def _run_ranks(n: int, settings: dict[str, str], jobs: dict[str, GenerationJob], tmp: Path) -> Any:
    jobs_path, out_path = tmp / "jobs.pkl", tmp / "out.npz"
    jobs_path.write_bytes(pickle.dumps(jobs))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LTXSERVE_") and k not in ("RANK", "WORLD_SIZE")
    }
    env.update({f"LTXSERVE_{k.upper()}": v for k, v in settings.items()})
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(RANKS_SCRIPT), str(n), str(jobs_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return np.load(out_path), proc.stdout


def _compare(engine: Engine, jobs: dict[str, GenerationJob], out: Any) -> dict[str, tuple[int, float]]:
    errors = {}
    for name, job in jobs.items():
        for ref in engine.generate(job):
            frames = out[f"{name}/{ref.seed}/frames"]
            audio = out[f"{name}/{ref.seed}/audio"]
            assert ref.audio is not None
            assert frames.shape == ref.frames.shape
            assert audio.shape == ref.audio.shape
            frame_err = int(np.abs(frames.astype(np.int16) - ref.frames.astype(np.int16)).max())
            audio_err = float(np.abs(audio - ref.audio).max())
            errors[f"{name}/{ref.seed}"] = (frame_err, audio_err)
            assert frame_err <= FRAME_TOLERANCE, (name, frame_err)
            assert audio_err <= AUDIO_TOLERANCE, (name, audio_err)
            assert float(np.abs(frames.astype(np.float32) - ref.frames).mean()) < 0.01
    print("max errors (frames in uint8 levels, audio):", errors)
    return errors


def test_guidance_parallel_equals_one_process(model_dir: Path, tmp_path: Path) -> None:
    """dev preset, 2 ranks: the unconditional and conditional rows on different ranks; a batch of
    two results without guidance splits the same way. A job cancelled by rank 0 mid-denoise stops
    every rank at the same step: the jobs after it still match."""
    jobs = {
        "t2v": replace(JOB, width=128),
        "i2v": replace(JOB, image=IMAGE),
        "plain": replace(JOB, guidance=1.0, seeds=(1, 2)),
    }
    settings = _settings(model_dir, tmp_path / "data")
    cancelled = replace(JOB, steps=6)
    out, stdout = _run_ranks(2, settings, {"cancel": cancelled, **jobs}, tmp_path)
    assert "layout guidance=2 ulysses=1 ring=1" in stdout
    assert str(out["cancel/error"]) == "cancelled"
    engine = Engine.load(Settings(**settings))  # type: ignore[arg-type]
    _compare(engine, jobs, out)


def test_ulysses_equals_one_process_with_two_stage(model_dir: Path, tmp_path: Path) -> None:
    """distilled preset (no guidance), 2 ranks: Ulysses splits video and text tokens; the 128x64
    jobs run two-stage (64x32 stage 1, x2 upsampling, 128x64 refine), the 64x64 ones in one stage.
    A size whose tokens do not split evenly is refused (NCCL-only) and the follower survives it."""
    jobs = {
        "t2v": JOB,
        "i2v": replace(JOB, image=IMAGE),
        "two_stage": replace(JOB, width=128, seeds=(5,)),
        "two_stage_i2v": replace(JOB, width=128, image=IMAGE),
    }
    uneven = replace(JOB, width=96, height=96)  # 3 latent frames x 3 x 3 = 27 tokens over 2 ranks
    settings = _settings(
        model_dir, tmp_path / "data", model_preset="distilled", two_stage_above_pixels=64 * 64
    )
    out, stdout = _run_ranks(2, settings, {"uneven": uneven, **jobs}, tmp_path)
    assert "layout guidance=1 ulysses=2 ring=1" in stdout
    assert "gloo cannot (NCCL can)" in str(out["uneven/error"])
    engine = Engine.load(Settings(**settings))  # type: ignore[arg-type]
    assert engine.plan(jobs["two_stage"]).two_stage
    assert not engine.plan(JOB).two_stage
    _compare(engine, jobs, out)


def test_layouts() -> None:
    """Defaults per rank count, and what the settings may ask for."""
    s = Settings()
    assert choose_layout(s, 2, guides=True) == Layout(2, 2, 1, 1)
    assert choose_layout(s, 2, guides=False) == Layout(2, 1, 2, 1)
    assert choose_layout(s, 8, guides=True) == Layout(8, 2, 4, 1)
    assert choose_layout(s, 3, guides=True) == Layout(3, 1, 3, 1)
    assert choose_layout(Settings(guidance_parallel="off"), 4, guides=True) == Layout(4, 1, 4, 1)
    assert choose_layout(Settings(ring_degree=2), 8, guides=True) == Layout(8, 2, 2, 2)
    with pytest.raises(ValueError, match="even number"):
        choose_layout(Settings(guidance_parallel="on"), 3, guides=False)
    with pytest.raises(ValueError, match="does not divide"):
        choose_layout(Settings(ring_degree=3), 4, guides=False)
