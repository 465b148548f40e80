"""Wire task -> engine job: the one place request parameters become generation settings."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final

from ltxserve.protocol.models import SEED_MAX, VideoInferenceTask

if TYPE_CHECKING:
    from PIL import Image

    from ltxserve.engine.types import GenerationJob

#: Random seeds stay below 2**53 so JavaScript clients read the reported ``seed`` back exactly
#: (any seed up to ``SEED_MAX`` is accepted from clients).
RANDOM_SEED_MAX: Final = 2**53 - 1


def result_seeds(task: VideoInferenceTask, rng: random.Random | None = None) -> tuple[int, ...]:
    """One distinct seed per requested result.

    With a client ``seed``: ``seed, seed+1, ...`` (wrapping past ``SEED_MAX`` to 0), so a result
    can be reproduced alone by sending its reported seed with ``numberResults: 1``. Without:
    independent random seeds.
    """
    count = task.number_results
    if task.seed is not None:
        return tuple((task.seed + index) % (SEED_MAX + 1) for index in range(count))
    source = rng if rng is not None else random.SystemRandom()
    seeds: list[int] = []
    while len(seeds) < count:
        seed = source.randint(0, RANDOM_SEED_MAX)
        if seed not in seeds:
            seeds.append(seed)
    return tuple(seeds)


def to_job(
    task: VideoInferenceTask, *, image: Image.Image | None = None, rng: random.Random | None = None
) -> GenerationJob:
    """The engine job for ``task``; ``image`` is its decoded first-frame image (the service
    resolves ``task.frame_image``, which may need fetching, and passes it here)."""
    from ltxserve.engine.types import GenerationJob  # runtime import keeps the protocol import light

    if (image is None) != (task.frame_image is None):
        wanted = "needs its first-frame image" if image is None else "has no frame image but one was given"
        raise ValueError(f"task {task.task_uuid} {wanted}")
    return GenerationJob(
        prompt=task.positive_prompt,
        negative_prompt=task.negative_prompt or "",  # the engine ignores it at CFGScale <= 1
        width=task.width,
        height=task.height,
        duration=task.duration,
        fps=task.fps,
        steps=task.steps,
        guidance=task.cfg_scale,
        seeds=result_seeds(task, rng),
        image=image,
        enhance_prompt=task.settings.enhance_prompt,
        audio=task.provider_settings.lightricks.generate_audio,
    )
