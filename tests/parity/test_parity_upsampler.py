"""Lightricks' spatial x2 latent upsampler file, loaded as the engine loads it, against ltx-core."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ltxserve.engine import two_stage
from tests.parity.conftest import record
from tests.parity.reference import TINY_UPSAMPLER, build_upsampler, errors, save_upsampler


@pytest.mark.parametrize("rational", [False, True])
def test_latent_upsampler_matches_ltx_core(tmp_path: Path, rational: bool) -> None:
    config = {**TINY_UPSAMPLER, "rational_resampler": rational}
    reference = build_upsampler(config)
    path = save_upsampler(reference, config, tmp_path / "ltx-2-spatial-upscaler-x2-tiny.safetensors")
    ours = two_stage._load_single_file(path, None, torch.float32).eval()
    latent = torch.randn(1, 8, 2, 3, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        theirs_out, ours_out = reference(latent), ours(latent)
    assert ours_out.shape == theirs_out.shape == (1, 8, 2, 6, 8)
    a, r = errors(ours_out, theirs_out)
    record(f"latent upsampler x2 (rational_resampler={rational})", a, r)
    assert r < 1e-5
