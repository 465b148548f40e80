"""Requests batched together: each result equals its job run alone, within float tolerance."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ltxserve.engine import Engine, GenerationJob
from ltxserve.engine.together import batch_key, generate_together

BASE = GenerationJob(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    width=128,
    height=64,
    duration=1,
    fps=16,
    steps=3,
    guidance=4.0,  # classifier-free guidance on: negative rows are batched too
    seeds=(1,),
)


def test_different_prompts_and_seeds_batch_exactly(engine: Engine) -> None:
    jobs = [
        BASE,
        replace(BASE, prompt="a fox in the snow", negative_prompt="", seeds=(7, 8)),
        replace(BASE, prompt="rain on a window", seeds=(2,)),
    ]
    calls: list[int] = []
    hook = engine.t2v.transformer.register_forward_pre_hook(
        lambda _m, args, kw: calls.append(1), with_kwargs=True
    )
    try:
        together = generate_together(engine, jobs)
    finally:
        hook.remove()
    assert len(calls) == BASE.steps  # one batched transformer pass per step for all four results
    alone = [engine.generate(job) for job in jobs]
    for batch, single in zip(together, alone, strict=True):
        assert [r.seed for r in batch] == [r.seed for r in single]
        for a, b in zip(batch, single, strict=True):
            assert a.prompt == b.prompt
            # uint8 frames: at most one level apart where a float sum rounded the other way
            assert int(np.abs(a.frames.astype(int) - b.frames.astype(int)).max()) <= 1
            assert a.audio is not None
            assert b.audio is not None
            assert np.abs(a.audio - b.audio).max() < 1e-4
    assert not np.array_equal(together[0][0].frames, together[2][0].frames)  # prompts matter


def _level_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def test_prompts_stay_with_their_jobs_in_one_encoder_call(engine: Engine) -> None:
    # one seed for all, so only the prompt tells the results apart: a row given to the wrong job
    # shows as a frame far from that job's alone-run
    prompts = [("a lighthouse at dusk", "blurry"), ("a fox in the snow", ""), ("rain on a window", "dark")]
    jobs = [replace(BASE, prompt=p, negative_prompt=n, seeds=(3,)) for p, n in prompts]
    encoder_calls: list[int] = []
    hook = engine.t2v.text_encoder.register_forward_pre_hook(
        lambda _m, args, kw: encoder_calls.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    engine.text_cache.clear()  # the alone-runs below must encode for themselves, not reuse these rows
    try:
        together = generate_together(engine, jobs)
    finally:
        hook.remove()
    # one call: three prompts, two given negatives and Lightricks' default for the empty one
    assert encoder_calls == [6]
    engine.text_cache.clear()
    alone = [engine.generate(job)[0] for job in jobs]
    for i, (batch, single) in enumerate(zip(together, alone, strict=True)):
        assert _level_diff(batch[0].frames, single.frames) <= 1, f"job {i} differs from its alone-run"
        for j, other in enumerate(alone):
            if j != i:  # the check can fail: another job's prompt moves the frames past tolerance
                assert _level_diff(batch[0].frames, other.frames) > 1, f"job {i} looks like job {j}"


def test_cached_prompts_are_not_encoded_again(engine: Engine) -> None:
    engine.text_cache.clear()
    engine.encode(BASE.prompt, BASE.negative_prompt, True)  # cached by an earlier request
    calls: list[int] = []
    hook = engine.t2v.text_encoder.register_forward_pre_hook(
        lambda _m, args, kw: calls.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        first = engine.encode_many(
            [(BASE.prompt, "blurry"), ("a new prompt", "blurry"), ("a new prompt", "blurry")], True
        )
        again = engine.encode_many([("a new prompt", "blurry")], True)
    finally:
        hook.remove()
    assert calls == [2]  # only the miss, once, with its negative: then everything is cached
    assert first[1] is first[2] is again[0]
    assert first[0] is engine.encode(BASE.prompt, BASE.negative_prompt, True)


def test_batch_key_keeps_apart_what_cannot_share_a_call() -> None:
    assert batch_key(BASE) == batch_key(replace(BASE, prompt="other", seeds=(5, 6)))
    for change in (
        {"width": 256},
        {"duration": 2},
        {"fps": 24},
        {"steps": 4},
        {"guidance": 3.0},
        {"audio": False},
    ):
        assert batch_key(replace(BASE, **change)) != batch_key(BASE)  # type: ignore[arg-type]
    assert batch_key(replace(BASE, enhance_prompt=True)) is None
    with pytest.raises(ValueError, match="one batch key"):
        generate_together(None, [BASE, replace(BASE, steps=4)])  # type: ignore[arg-type]
