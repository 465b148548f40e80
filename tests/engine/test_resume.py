"""Step checkpoints: a run resumed from any checkpoint equals the uninterrupted run bit-for-bit.

On the real tiny LTX-2 pipelines (random weights: the output is noise, which makes any deviation
visible). Each state goes through ``to_bytes``/``from_bytes`` as it would through the blob store.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob, GenerationResult
from ltxserve.engine.resume import Checkpointing, GenerationPreempted, StepState

JOB = GenerationJob(
    prompt="a lighthouse at dusk, waves crashing",
    negative_prompt="blurry",
    width=128,
    height=64,
    duration=1,
    fps=12,
    steps=5,
    guidance=3.0,  # CFG: two rows per result, the negative prompt in play
    seeds=(7,),
)


@pytest.fixture(scope="module")
def two_stage_engine(upsampler_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine.load(
        Settings(
            data_dir=tmp_path_factory.mktemp("data"),
            model_path=str(upsampler_model_dir),
            model_preset="distilled",
            max_sequence_length=64,
            two_stage_above_pixels=128 * 64,
        )
    )


def record(
    engine: Engine, job: GenerationJob, **kw: object
) -> tuple[list[GenerationResult], list[StepState]]:
    """Run ``job`` checkpointing after every step; the states come back serialized and parsed."""
    states: list[StepState] = []
    ck = Checkpointing(save=lambda s: states.append(StepState.from_bytes(s.to_bytes())), every_steps=1)
    for name, value in kw.items():
        setattr(ck, name, value)
    return engine.generate(job, checkpoint=ck), states


def resumed(engine: Engine, job: GenerationJob, state: StepState) -> tuple[list[GenerationResult], list[int]]:
    seen: list[int] = []
    ck = Checkpointing(save=lambda _s: None, resume=state)
    out = engine.generate(job, progress=lambda i, _n: seen.append(i), checkpoint=ck)
    return out, seen


def assert_same(a: list[GenerationResult], b: list[GenerationResult]) -> None:
    assert [r.seed for r in a] == [r.seed for r in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.frames, y.frames)
        assert (x.audio is None) == (y.audio is None)
        if x.audio is not None:
            assert y.audio is not None
            np.testing.assert_array_equal(x.audio, y.audio)


def test_single_stage_resume_is_exact_at_every_step(engine: Engine) -> None:
    baseline = engine.generate(JOB)
    out, states = record(engine, JOB)
    assert_same(baseline, out)  # taking checkpoints changes nothing
    # mid-stage after every step, then the denoised latents before decode
    assert [(s.stage, s.step, s.finished) for s in states] == [(1, i, False) for i in range(1, 5)] + [
        (1, 0, True)
    ]
    for state in (states[0], states[2], states[-1]):
        out, seen = resumed(engine, JOB, state)
        assert_same(baseline, out)
        assert seen[0] == state.progress  # progress restarts at the checkpoint, never below
        assert seen == sorted(seen)


def test_image_to_video_and_sequential_results_resume_exactly(engine: Engine) -> None:
    job = replace(JOB, seeds=(3, 4), image=Image.new("RGB", (160, 90), (200, 30, 30)), steps=3)
    engine.settings.batch_results = False
    try:
        baseline, states = record(engine, job)
        second = [s for s in states if s.seeds == (4,) and not s.finished]
        assert second
        assert second[0].progress == 3 + second[0].step  # after the first result's steps
        out, _ = resumed(engine, job, second[0])
        assert_same(baseline, out)
    finally:
        engine.settings.batch_results = True


def test_two_stage_resume_mid_stage_one_between_stages_and_mid_refine(two_stage_engine: Engine) -> None:
    job = replace(JOB, width=256, height=128, duration=1, fps=12, guidance=1.0, steps=8)
    assert two_stage_engine.plan(job).two_stage
    baseline = two_stage_engine.generate(job)
    out, states = record(two_stage_engine, job)
    assert_same(baseline, out)
    by_point = {(s.stage, s.step, s.finished): s for s in states}
    points = [(1, 4, False), (1, 0, True), (2, 1, False), (2, 2, False), (2, 0, True)]
    assert all(p in by_point for p in points)
    for point in points:
        out, _ = resumed(two_stage_engine, job, by_point[point])
        assert_same(baseline, out)


def test_checkpoint_of_another_job_is_refused_and_the_run_restarts(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    _, states = record(engine, replace(JOB, steps=2))
    other = replace(JOB, prompt="a different prompt", steps=2)
    baseline = engine.generate(other)
    out, seen = resumed(engine, other, states[0])
    assert_same(baseline, out)
    assert seen[0] == 1  # from step 0
    assert "checkpoint refused" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        StepState.from_bytes(b"not a checkpoint")


def test_preemption_checkpoints_at_the_next_step_and_resumes_exactly(engine: Engine) -> None:
    baseline = engine.generate(JOB)
    preempt = threading.Event()
    saved: list[StepState] = []

    def progress(i: int, _n: int) -> None:
        if i == 2:
            preempt.set()

    ck = Checkpointing(save=saved.append, every_seconds=3600, preempt=preempt)
    with pytest.raises(GenerationPreempted) as info:
        engine.generate(JOB, progress=progress, checkpoint=ck)
    assert info.value.state is saved[-1]
    assert (saved[-1].stage, saved[-1].step) == (1, 2)
    out, _ = resumed(engine, JOB, saved[-1])
    assert_same(baseline, out)


def test_interval_by_steps(engine: Engine) -> None:
    _, states = record(engine, replace(JOB, guidance=1.0), every_steps=2)
    assert [s.progress for s in states] == [2, 4]


def test_resume_with_the_step_cache_on(engine: Engine) -> None:
    """The step cache reuses the previous step's output: checkpoints are taken only where the
    next step computes afresh, and the resumed call continues the cache's step count."""
    job = replace(JOB, guidance=1.0, steps=6)
    engine.settings.step_cache_every = 2  # steps 2 and 4 reuse the step before
    try:
        baseline, states = record(engine, job)
        assert [s.step for s in states if not s.finished] == [1, 3, 5]
        out, _ = resumed(engine, job, states[1])
        assert_same(baseline, out)
    finally:
        engine.settings.step_cache_every = 0


@pytest.fixture(scope="module")
def mid_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The mid-size random-weight model (8 transformer blocks of width 512, a wider VAE): noise."""
    from ltxserve.engine.tiny import save_tiny_model

    model = save_tiny_model(tmp_path_factory.mktemp("models") / "mid-ltx2", "mid")
    return Engine.load(
        Settings(data_dir=tmp_path_factory.mktemp("data"), model_path=str(model), max_sequence_length=64)
    )


def test_mid_model_resumes_exactly_mid_denoise_and_before_decode(mid_engine: Engine) -> None:
    job = replace(JOB, steps=4)
    baseline = mid_engine.generate(job)
    out, states = record(mid_engine, job)
    assert_same(baseline, out)
    assert [(s.stage, s.step, s.finished) for s in states] == [
        (1, 1, False),
        (1, 2, False),
        (1, 3, False),
        (1, 0, True),
    ]
    for state in (states[1], states[-1]):
        out, seen = resumed(mid_engine, job, state)
        assert_same(baseline, out)
        assert seen[0] == state.progress
