"""The loader follows the file's embedded config, not the bundled LTX-2.0 one: a field that differs
is honoured (and still matches ltx-core) or the file is refused with the field named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ltxserve.engine import checkpoints
from tests.parity.conftest import Converted, record
from tests.parity.reference import TINY_LTX20, Reference, errors


def test_zeros_padding_from_metadata_is_honoured(tmp_path: Path) -> None:
    """LTX-2.3's VAE declares spatial_padding_mode "zeros" (LTX-2.0: reflect in the decoder); the
    bundled configs would decode such a file with reflect padding, off by the full magnitude."""
    config = copy.deepcopy(TINY_LTX20)
    config["vae"]["spatial_padding_mode"] = "zeros"
    reference = Reference(config, seed=20)
    path = reference.save(tmp_path / "zeros.safetensors")
    converted = Converted(reference, path, checkpoints.convert_single_file(path, tmp_path / "out"))
    vae = converted.load("vae")
    assert vae.config.decoder_spatial_padding_mode == "zeros"
    latent = torch.randn(1, 8, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = reference.decoder(latent)
        mean, std = vae.latents_mean.view(1, -1, 1, 1, 1), vae.latents_std.view(1, -1, 1, 1, 1)
        ours = vae.decode(latent * std + mean, return_dict=False)[0]
    a, r = errors(ours, theirs)
    record("vae.decode (zeros padding from metadata)", a, r)
    assert r < 1e-5


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("vae", "norm_layer", "group_norm"),
        ("transformer", "qk_norm", "layer_norm"),
        ("vae", "decoder_blocks", [["attn_res_x", {"num_layers": 1, "attention_head_dim": 8}]]),
    ],
)
def test_unconvertible_field_is_refused_by_name(
    ltx20: Converted, tmp_path: Path, section: str, field: str, value: object
) -> None:
    config = copy.deepcopy(TINY_LTX20)
    config[section][field] = value
    path = tmp_path / "odd.safetensors"
    save_file(load_file(str(ltx20.checkpoint)), str(path), metadata={"config": json.dumps(config)})
    with pytest.raises(checkpoints.CheckpointError, match=rf"{section}\.{field}"):
        checkpoints.convert_single_file(path, tmp_path / "out")
