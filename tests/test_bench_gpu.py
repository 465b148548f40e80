"""bench/gpu.py never rots: its CPU smoke mode (tiny config, the same code path) runs every section,
and its FLOPs formula matches torch's FLOP counter on the full-size transformer shapes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import bench_scripts

BENCH = Path(__file__).parents[1] / "bench" / "gpu.py"


def _bench_module():  # type: ignore[no-untyped-def]
    return bench_scripts.load("gpu")


def test_flops_formula_matches_torch_counter() -> None:
    """The MFU's numerator: the analytic count equals FlopCounterMode's on LTX-2.0's real
    transformer config (built on the meta device: no memory, no weights) at a small size."""
    from diffusers import LTX2VideoTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from ltxserve.engine.checkpoints import LTX2_0_CONFIGS

    bench = _bench_module()
    config = {**LTX2_0_CONFIGS["transformer"], "num_layers": 2}
    with torch.device("meta"):
        model = LTX2VideoTransformer3DModel.from_config(config)
    frames, h, w, audio, text = 2, 4, 6, 10, 32
    kw = {
        "hidden_states": torch.empty(1, frames * h * w, 128, device="meta"),
        "audio_hidden_states": torch.empty(1, audio, 128, device="meta"),
        "encoder_hidden_states": torch.empty(1, text, 3840, device="meta"),
        "audio_encoder_hidden_states": torch.empty(1, text, 3840, device="meta"),
        "timestep": torch.empty(1, device="meta"),
        "num_frames": frames,
        "height": h,
        "width": w,
        "fps": 24.0,
        "audio_num_frames": audio,
        "return_dict": False,
    }
    with FlopCounterMode(display=False) as counter:
        model(**kw)
    counted = counter.get_total_flops()
    formula = bench.transformer_flops(model.config, frames * h * w, audio, text)
    assert abs(formula - counted) / counted < 0.01, (formula, counted)


@pytest.mark.timeout(900)  # the tiny model through every section, and 1 + 2 gloo ranks started
def test_smoke_mode_runs_every_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other section\n\nkept\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--results", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = results.read_text()
    assert "## Other section\n\nkept" in text  # only its own section is written
    for heading in (
        "### End to end",
        "### Attention backends",
        "### torch.compile",
        "### FP8 compute",
        "### Prompt enhancement alone",
        "### One job over 1..2 CPU processes (gloo)",
    ):
        assert heading in text, heading
    assert "B/A" in text  # interleaved A/B pairs (bench/method.py)
    assert "transformer FLOPs in the denoise" in text
    assert "2 rank(s)" in text
    assert "same tokens: True" in text  # static cache + compile is exact


def test_results_section_written_inside_the_docs_markers(tmp_path: Path) -> None:
    """RESULTS.md as run_all.py writes it: the section goes before the docs' end marker, the
    "not run" line for it goes, a second run replaces the section, everything else stays."""
    bench = _bench_module()
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmark results\n\n<!-- --8<-- [start:results] -->\n\n## Other (`bench/api.py`)\n\nkept\n\n"
        "## Not run for this file\n\n- `python bench/gpu.py` (needs a GPU)\n- `python bench/scale.py` (x)\n\n"
        "<!-- --8<-- [end:results] -->\n\n## Pictures\n\n![p](p.png)\n"
    )
    bench.write_results(results, ["first run"], "python bench/gpu.py")
    bench.write_results(results, ["second run"], "python bench/gpu.py")
    text = results.read_text()
    assert text.count(bench.SECTION) == 1
    assert "second run" in text
    assert "first run" not in text
    assert "python bench/gpu.py` (needs" not in text
    assert "- `python bench/scale.py` (x)" in text
    assert text.index(bench.SECTION) < text.index("<!-- --8<-- [end:results] -->") < text.index("## Pictures")
    assert "## Other (`bench/api.py`)\n\nkept" in text
