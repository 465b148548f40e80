"""Wire task -> GenerationJob."""

from __future__ import annotations

import random
from typing import Any

import pytest
from PIL import Image

from ltxserve.protocol import RANDOM_SEED_MAX, SEED_MAX, VideoInferenceTask, parse_task, result_seeds, to_job

TASK_UUID = "4d89f0f5-1277-48ee-875d-58e07a4b09d3"
IMAGE_UUID = "aac49721-1964-481a-ae78-8a4e29b91402"


def task(**fields: Any) -> VideoInferenceTask:
    raw = {
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "model": "lightricks:ltx@2",
        "positivePrompt": " a cat ",
    }
    parsed, errors = parse_task(raw | fields)
    assert errors == []
    assert isinstance(parsed, VideoInferenceTask)
    return parsed


def test_fields_map_onto_the_job() -> None:
    job = to_job(
        task(
            negativePrompt="blurry",
            width=768,
            height=512,
            duration=3,
            fps=24,
            steps=30,
            CFGScale=3.5,
            seed=11,
            settings={"enhancePrompt": False},
            providerSettings={"lightricks": {"generateAudio": False}},
        )
    )
    assert (job.prompt, job.negative_prompt) == ("a cat", "blurry")
    assert (job.width, job.height, job.duration, job.fps, job.steps) == (768, 512, 3, 24, 30)
    assert job.guidance == 3.5
    assert job.seeds == (11,)
    assert (job.enhance_prompt, job.audio, job.image) == (False, False, None)
    assert job.requested_frames == 72


def test_defaults_map_onto_the_job() -> None:
    job = to_job(task(), rng=random.Random(1))
    assert (job.width, job.height, job.duration, job.fps, job.steps, job.guidance) == (
        1280,
        704,
        5,
        25,
        40,
        4.0,
    )
    assert (job.negative_prompt, job.enhance_prompt, job.audio) == ("", True, True)


def test_given_seed_gives_sequential_seeds() -> None:
    assert to_job(task(seed=100, numberResults=4)).seeds == (100, 101, 102, 103)
    assert result_seeds(task(seed=SEED_MAX - 1, numberResults=3)) == (SEED_MAX - 1, SEED_MAX, 0)


def test_random_seeds_are_distinct_and_in_range() -> None:
    for _ in range(20):
        seeds = to_job(task(numberResults=4)).seeds
        assert len(set(seeds)) == 4
        assert all(0 <= seed <= RANDOM_SEED_MAX for seed in seeds)
    assert result_seeds(task(numberResults=3), random.Random(5)) == result_seeds(
        task(numberResults=3), random.Random(5)
    )


def test_random_seeds_stay_distinct_with_a_repeating_source() -> None:
    class Repeating(random.Random):
        def __init__(self) -> None:
            super().__init__()
            self.values = iter([7, 7, 7, 8, 8, 9, 10])

        def randint(self, a: int, b: int) -> int:
            return next(self.values)

    assert result_seeds(task(numberResults=4), Repeating()) == (7, 8, 9, 10)


def test_image_to_video_needs_its_image() -> None:
    i2v = task(inputs={"frameImages": [IMAGE_UUID]})
    image = Image.new("RGB", (64, 64))
    assert to_job(i2v, image=image).image is image
    with pytest.raises(ValueError, match="first-frame image"):
        to_job(i2v)
    with pytest.raises(ValueError, match="no frame image"):
        to_job(task(), image=image)
