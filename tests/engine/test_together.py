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
