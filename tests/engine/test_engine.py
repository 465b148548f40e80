"""The engine on the real tiny LTX-2 pipeline (random weights: it outputs noise)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ltxserve.engine import CapacityError, Engine, GenerationCancelled, GenerationJob

JOB = GenerationJob(
    prompt="a lighthouse at dusk, waves crashing",
    negative_prompt="blurry",
    width=128,
    height=64,
    duration=1,
    fps=12,
    steps=2,
    guidance=1.0,
    seeds=(7,),
)


@contextmanager
def count_transformer_rows(engine: Engine) -> Iterator[list[int]]:
    """Batch rows the transformer processes per call: 2 per result under CFG, 1 without."""
    rows: list[int] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        rows.append(int(kwargs["hidden_states"].shape[0]))

    handle = engine.t2v.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield rows
    finally:
        handle.remove()


def test_exact_length_and_shapes(engine: Engine) -> None:
    job = replace(JOB, duration=2, fps=7)  # 14 frames requested -> 17 generated, 3 dropped
    (result,) = engine.generate(job)
    assert result.frames.shape == (14, 64, 128, 3)
    assert result.frames.dtype == np.uint8
    assert result.audio is not None
    assert result.audio.shape == (2, 2 * engine.sample_rate)
    assert result.sample_rate == 24_000
    assert result.seed == 7
    assert result.fps == 7


def test_same_seed_same_output_other_seed_differs(engine: Engine) -> None:
    (a,) = engine.generate(JOB)
    (b,) = engine.generate(JOB)
    (c,) = engine.generate(replace(JOB, seeds=(8,)))
    assert a.audio is not None
    assert b.audio is not None
    assert c.audio is not None
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.audio, c.audio)


def test_cfg_off_spends_one_row_per_result(engine: Engine) -> None:
    with count_transformer_rows(engine) as rows:
        engine.generate(replace(JOB, guidance=1.0))
    assert rows == [1] * JOB.steps
    with count_transformer_rows(engine) as rows:
        engine.generate(replace(JOB, guidance=3.5))
    assert rows == [2] * JOB.steps


def test_negative_prompt_ignored_without_guidance(engine: Engine) -> None:
    (a,) = engine.generate(replace(JOB, negative_prompt="anything"))
    (b,) = engine.generate(replace(JOB, negative_prompt="something else entirely"))
    assert np.array_equal(a.frames, b.frames)
    (c,) = engine.generate(replace(JOB, guidance=3.0, negative_prompt="anything"))
    (d,) = engine.generate(replace(JOB, guidance=3.0, negative_prompt="something else entirely"))
    assert not np.array_equal(c.frames, d.frames)


def test_batched_results_match_single_runs(engine: Engine) -> None:
    job = replace(JOB, seeds=(11, 12, 13))
    assert engine.plan(job).batched
    with count_transformer_rows(engine) as rows:
        batched = engine.generate(job)
    assert rows == [3] * JOB.steps  # one pass for all three results
    assert [r.seed for r in batched] == [11, 12, 13]
    for r in batched:
        (single,) = engine.generate(replace(JOB, seeds=(r.seed,)))
        assert np.abs(r.frames.astype(int) - single.frames.astype(int)).max() <= 1
        assert r.audio is not None
        assert single.audio is not None
        assert np.allclose(r.audio, single.audio, atol=1e-4)
    assert not np.array_equal(batched[0].frames, batched[1].frames)


def test_progress_reports_every_step(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    engine.generate(replace(JOB, steps=4), progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancellation_stops_within_one_step(engine: Engine) -> None:
    cancel = threading.Event()
    steps: list[int] = []

    def progress(i: int, _n: int) -> None:
        steps.append(i)
        if i == 2:
            cancel.set()

    with count_transformer_rows(engine) as rows, pytest.raises(GenerationCancelled):
        engine.generate(replace(JOB, steps=10), progress=progress, cancel=cancel)
    assert steps == [1, 2]
    assert len(rows) == 2
    # The engine is usable again afterwards.
    (result,) = engine.generate(JOB)
    assert result.frames.shape[0] == JOB.requested_frames


def test_image_to_video_conditions_first_frame(engine: Engine) -> None:
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))  # a blue centre band survives a cover crop
    job = replace(JOB, image=image)
    (a,) = engine.generate(job)
    (t2v,) = engine.generate(JOB)
    assert a.frames.shape == t2v.frames.shape
    assert not np.array_equal(a.frames, t2v.frames)
    (b,) = engine.generate(replace(job, image=Image.new("RGB", (300, 100), (0, 255, 0))))
    assert not np.array_equal(a.frames[0], b.frames[0])


def test_no_audio_when_disabled(engine: Engine) -> None:
    (result,) = engine.generate(replace(JOB, audio=False))
    assert result.audio is None


def test_prompt_enhancement_uses_the_text_model(engine: Engine) -> None:
    (plain,) = engine.generate(JOB)
    (enhanced,) = engine.generate(replace(JOB, enhance_prompt=True))
    assert plain.prompt == JOB.prompt
    assert enhanced.prompt != JOB.prompt  # whatever the random text model wrote
    assert enhanced.timings.enhance > 0
    assert not np.array_equal(plain.frames, enhanced.frames)


def test_capacity_refuses_before_work(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    big = replace(JOB, width=2048, height=2048, duration=20, fps=120)
    with count_transformer_rows(engine) as rows, pytest.raises(CapacityError) as err:
        engine.generate(big)
    assert rows == []
    assert err.value.parameter == "fps"
    assert "video tokens" in str(err.value)

    monkeypatch.setattr(engine.settings, "memory_limit_gb", 0.01)
    wide = replace(JOB, width=1024, height=64)
    with pytest.raises(CapacityError) as err:
        engine.generate(wide)
    assert err.value.parameter == "width"
    assert "GiB" in str(err.value)


def test_capacity_falls_back_to_sequential_results(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    job = replace(JOB, width=512, height=256, seeds=(1, 2, 3, 4))
    one = engine.plan(replace(job, seeds=(1,))).estimate.peak(tiled=False)
    monkeypatch.setattr(engine.settings, "vae_tiling", "off")
    monkeypatch.setattr(engine.settings, "memory_limit_gb", one * 1.5 / 1024**3)
    plan = engine.plan(job)
    assert not plan.batched
    with count_transformer_rows(engine) as rows:
        results = engine.generate(replace(job, steps=1))
    assert rows == [1, 1, 1, 1]
    assert [r.seed for r in results] == [1, 2, 3, 4]


@contextmanager
def count_calls(module: Any) -> Iterator[list[int]]:
    calls: list[int] = []
    handle = module.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def test_text_encoding_is_cached_and_exact(engine: Engine) -> None:
    engine.text_cache.clear()
    job = replace(JOB, prompt="a cached prompt", guidance=3.0)
    with count_calls(engine.t2v.text_encoder) as calls:
        (first,) = engine.generate(job)
        engine.generate(replace(job, seeds=(99,)))
        (third,) = engine.generate(job)
    assert len(calls) == 2  # prompt + negative, once; the next two jobs reuse them
    assert np.array_equal(first.frames, third.frames)
    engine.text_cache.clear()
    (fresh,) = engine.generate(job)
    assert np.array_equal(first.frames, fresh.frames)  # a hit equals a recomputation
    with count_calls(engine.t2v.text_encoder) as calls:
        engine.generate(replace(job, negative_prompt="something else"))
    assert len(calls) == 2  # another negative is another key


def test_enhancement_is_cached_per_prompt(engine: Engine) -> None:
    engine.enhance_cache.clear()
    job = replace(JOB, prompt="enhance me", enhance_prompt=True)
    (a,) = engine.generate(job)
    hits = engine.enhance_cache.stats.hits
    (b,) = engine.generate(replace(job, seeds=(123,)))
    assert engine.enhance_cache.stats.hits == hits + 1
    assert a.prompt == b.prompt  # one enhancement per prompt, whatever the result seed
    engine.enhance_cache.clear()
    (c,) = engine.generate(job)
    assert c.prompt == a.prompt  # fixed enhancement seed: recomputing gives the same text
    assert np.array_equal(c.frames, a.frames)
