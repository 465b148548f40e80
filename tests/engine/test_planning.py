import numpy as np
import pytest

from ltxserve.engine.planning import fit_audio, plan_frames


@pytest.mark.parametrize(
    ("duration", "fps", "requested", "generated"),
    [
        (1, 1, 1, 1),  # a single frame is 8*0+1
        (1, 2, 2, 9),
        (1, 8, 8, 9),
        (1, 9, 9, 9),  # already 8k+1: nothing to trim
        (1, 24, 24, 25),
        (1, 25, 25, 25),
        (5, 24, 120, 121),  # the LTX-2 default clip
        (7, 24, 168, 169),
        (20, 120, 2400, 2401),
        (20, 1, 20, 25),
    ],
)
def test_plan_frames(duration: int, fps: int, requested: int, generated: int) -> None:
    plan = plan_frames(duration, fps)
    assert plan.requested_frames == requested == duration * fps
    assert plan.generated_frames == generated
    assert (plan.generated_frames - 1) % 8 == 0
    assert 0 <= plan.trimmed_frames < 8
    assert plan.latent_frames == (generated - 1) // 8 + 1


def test_plan_frames_is_smallest_cover() -> None:
    for duration in range(1, 21):
        for fps in range(1, 121):
            plan = plan_frames(duration, fps)
            assert plan.generated_frames >= plan.requested_frames
            assert plan.generated_frames - 8 < plan.requested_frames


def test_plan_frames_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="duration"):
        plan_frames(0, 24)


def test_fit_audio_cuts_and_pads() -> None:
    audio = np.ones((2, 1000), dtype=np.float32)
    cut = fit_audio(audio, 100, 5)
    assert cut.shape == (2, 500)
    padded = fit_audio(audio, 100, 12)
    assert padded.shape == (2, 1200)
    assert np.all(padded[:, 1000:] == 0)
    assert np.all(padded[:, :1000] == 1)
