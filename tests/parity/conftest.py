"""The parity suite's shared models: a tiny LTX-2.0 built with ltx-core, written as a Lightricks
release file, and the same file converted through ltxserve's checkpoint path (see reference.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.parity.reference import TINY_LTX20, Reference

#: Measured errors, printed at the end of the run (the README's fidelity table quotes them).
MEASURED: dict[str, tuple[float, float]] = {}


def record(name: str, abs_err: float, rel_err: float) -> None:
    MEASURED[name] = (abs_err, rel_err)
    print(f"parity {name}: max abs {abs_err:.3g}, max rel {rel_err:.3g}")


@dataclass
class Converted:
    reference: Reference
    checkpoint: Path
    directory: Path

    def load(self, component: str) -> Any:
        from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
        from diffusers.pipelines import ltx2

        classes: dict[str, Any] = {
            "transformer": LTX2VideoTransformer3DModel,
            "vae": AutoencoderKLLTX2Video,
            "audio_vae": AutoencoderKLLTX2Audio,
            "connectors": ltx2.LTX2TextConnectors,
        }
        if component == "vocoder":
            name = json.loads((self.directory / "model_index.json").read_text())["vocoder"][1]
            classes["vocoder"] = getattr(ltx2, name)
        return classes[component].from_pretrained(self.directory, subfolder=component).eval()


@pytest.fixture(scope="session")
def ltx20(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    from ltxserve.engine import checkpoints

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("parity20")
    reference = Reference(TINY_LTX20)
    path = reference.save(root / "ltx-2-tiny-dev.safetensors")
    out = checkpoints.convert_single_file(path, root / "converted")
    return Converted(reference, path, out)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("parity with ltx-core (max abs / max rel error)")
        for name, (a, r) in sorted(MEASURED.items()):
            terminalreporter.write_line(f"{name:40s} {a:10.3g} {r:10.3g}")
