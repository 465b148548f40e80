"""The engine hands frames to a sink while it decodes: the same frames and audio the results carry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ltxserve.engine import Engine, GenerationJob, decode

JOB = GenerationJob(
    prompt="a kite over hills",
    width=128,
    height=64,
    duration=2,
    fps=12,
    steps=2,
    guidance=1.0,
    seeds=(3, 4),
)


class Recorder:
    def __init__(self) -> None:
        self.audio: dict[int, np.ndarray | None] = {}
        self.seeds: dict[int, int] = {}
        self.chunks: dict[int, list[np.ndarray]] = {}

    def start(self, index: int, seed: int, audio: np.ndarray | None, sample_rate: int, fps: int) -> None:
        assert index not in self.seeds
        self.seeds[index], self.audio[index], self.chunks[index] = seed, audio, []

    def frames(self, index: int, chunk: np.ndarray) -> None:
        self.chunks[index].append(chunk.copy())


def test_uint8_conversion_is_diffusers_postprocessing_bit_for_bit(engine: Engine) -> None:
    video = torch.rand(2, 3, 9, 32, 48, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    reference = decode.to_uint8(
        np.asarray(engine.t2v.video_processor.postprocess_video(video, output_type="np"))
    )
    assert np.array_equal(decode.frames_uint8(video.clone()), reference)  # the CPU's numpy path
    assert np.array_equal(decode._uint8_frames(video.clone()).numpy(), reference)  # torch's (GPUs)


@pytest.mark.parametrize("tiling", ["off", "on"])
def test_sink_receives_exactly_the_results(engine: Engine, tiling: str) -> None:
    eng = Engine(
        engine.settings.model_copy(update={"vae_tiling": tiling, "decode_chunk_frames": 1}),
        engine.t2v,
        engine.i2v,
        engine.source,
    )
    plain = eng.generate(JOB)
    sink = Recorder()
    streamed = eng.generate(JOB, sink=sink)
    assert eng.plan(JOB).tiled_decode is (tiling == "on")
    assert sink.seeds == {0: 3, 1: 4}
    for i, (a, b) in enumerate(zip(plain, streamed, strict=True)):
        assert np.array_equal(a.frames, b.frames)  # a sink changes nothing
        assert len(sink.chunks[i]) > 1  # handed over in pieces, not at the end
        assert np.array_equal(np.concatenate(sink.chunks[i]), b.frames)
        assert b.audio is not None
        assert np.array_equal(sink.audio[i], b.audio)
    assert streamed[0].timings.vae_decode <= streamed[0].timings.video_decode


def test_conversion_beside_a_streamed_encode_runs_on_one_thread() -> None:
    """With a sink (an encoder thread beside it) torch's CPU conversion (a bfloat16 decoder's;
    float32 converts in numpy, on one thread) leaves the other cores to the encoder, then gives
    torch its threads back; the frames are the same either way."""
    video = (torch.rand(1, 3, 17, 32, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1).bfloat16()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []
        alone = np.empty((1, 17, 32, 48, 3), np.uint8)
        beside = np.empty_like(alone)
        decode._emit(video.clone(), alone, 0, 0, 17, None)
        decode._emit(
            video.clone(), beside, 0, 0, 17, lambda first, chunk: seen.append(torch.get_num_threads())
        )
        assert seen == [1, 1, 1]  # three groups of up to CONVERT_GROUP frames
        assert torch.get_num_threads() == 2
        np.testing.assert_array_equal(alone, beside)
    finally:
        torch.set_num_threads(threads)
