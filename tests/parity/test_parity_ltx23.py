"""LTX-2.3 (22B layout) components from a Lightricks-format release file through ltxserve's checkpoint
path, against ltx-core 1.0.0 (whose code is LTX-2.3's release code): the same comparisons as for
LTX-2.0, with 2.3's per-modality text projections, gated attention, prompt modulation, the
compress_space/compress_time VAE decoder with zeros padding, and the BWE vocoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.model.transformer.modality import Modality

from ltxserve.engine import checkpoints
from tests.parity.conftest import Converted, record
from tests.parity.reference import TEXT_HIDDEN, Reference23, errors
from tests.parity.test_parity_components import FPS, REL_TOL, _audio_state, _text, _video_state


@pytest.fixture(scope="module")
def ltx23(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    root = tmp_path_factory.mktemp("parity23")
    reference = Reference23()
    path = reference.save(root / "ltx-2.3-22b-tiny-dev.safetensors")
    out = checkpoints.convert_single_file(path, root / "converted", text_hidden=TEXT_HIDDEN)
    return Converted(reference, path, out)


def test_connectors_match_ltx_core(ltx23: Converted) -> None:
    states, mask = _text()
    ref = ltx23.reference.embeddings.process_hidden_states(states, mask, padding_side="left")
    connectors = ltx23.load("connectors")
    assert connectors.config.per_modality_projections
    with torch.no_grad():
        video, audio, _ = connectors(torch.stack(states, dim=-1).flatten(2, 3), mask, padding_side="left")
    for name, ours, theirs in (("video", video, ref.video_encoding), ("audio", audio, ref.audio_encoding)):
        a, r = errors(ours, theirs)
        record(f"LTX-2.3 connectors.{name}", a, r)
        assert r < REL_TOL, name


def test_transformer_matches_ltx_core(ltx23: Converted) -> None:
    ref = ltx23.reference
    states, mask = _text()
    enc = ref.embeddings.process_hidden_states(states, mask, padding_side="left")
    frames, height, width = 2, 2, 3
    video, video_pos = _video_state(frames, height, width, 8)
    audio, audio_pos = _audio_state(5, 128)
    sigma = torch.tensor([0.7])
    video_t = sigma.expand(1, video.shape[1]).clone()
    video_t[:, : height * width] = 0.0  # image-to-video: frame 0 held clean, audio at sigma
    audio_t = sigma.expand(1, audio.shape[1])
    transformer = ltx23.load("transformer")
    assert transformer.config.gated_attn
    assert transformer.config.cross_attn_mod
    with torch.no_grad():
        ref_v, ref_a = ref.transformer(
            Modality(video, sigma, video_t, video_pos, enc.video_encoding, context_mask=enc.attention_mask),
            Modality(audio, sigma, audio_t, audio_pos, enc.audio_encoding, context_mask=enc.attention_mask),
            BatchedPerturbationConfig.empty(1),
        )
        kwargs = dict(
            hidden_states=video,
            audio_hidden_states=audio,
            encoder_hidden_states=enc.video_encoding,
            audio_encoder_hidden_states=enc.audio_encoding,
            timestep=video_t * 1000,
            audio_timestep=audio_t * 1000,
            sigma=sigma * 1000,
            encoder_attention_mask=enc.attention_mask,
            audio_encoder_attention_mask=enc.attention_mask,
            num_frames=frames,
            height=height,
            width=width,
            fps=FPS,
            audio_num_frames=5,
            use_cross_timestep=True,  # LTX-2.3's release behaviour (diffusers' docs; LTX-2 repo 822ce3c)
            return_dict=False,
        )
        ours_v, ours_a = transformer(**kwargs)
    for name, ours, theirs in (("video", ours_v, ref_v), ("audio", ours_a, ref_a)):
        a, r = errors(ours, theirs)
        record(f"LTX-2.3 transformer.{name}", a, r)
        assert r < REL_TOL, name
    # the comparison is sensitive: LTX-2.0's cross-attention timestep gives another video output
    with torch.no_grad():
        own_v, _ = transformer(**{**kwargs, "use_cross_timestep": False})
    assert errors(own_v, ref_v)[1] > 1e-3


def test_vae_decode_matches_ltx_core(ltx23: Converted) -> None:
    vae = ltx23.load("vae")
    assert vae.config.decoder_spatial_padding_mode == "zeros"
    latent = torch.randn(1, 8, 2, 2, 2, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        theirs = ltx23.reference.decoder(latent)
        mean, std = vae.latents_mean.view(1, -1, 1, 1, 1), vae.latents_std.view(1, -1, 1, 1, 1)
        ours = vae.decode(latent * std + mean, return_dict=False)[0]
    assert ours.shape == theirs.shape == (1, 3, 9, 64, 64)
    a, r = errors(ours, theirs)
    record("LTX-2.3 vae.decode", a, r)
    assert r < REL_TOL


def test_bwe_vocoder_matches_ltx_core(ltx23: Converted) -> None:
    vocoder = ltx23.load("vocoder")
    assert type(vocoder).__name__ == "LTX2VocoderWithBWE"
    mel = torch.randn(1, 2, 21, 64, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        theirs = ltx23.reference.vocoder(mel)
        ours = vocoder(mel)
    assert ours.shape == theirs.shape
    assert 0 < theirs.abs().max() < 1  # inside the output clamp: a difference would show
    a, r = errors(ours, theirs)
    record("LTX-2.3 vocoder with BWE (48 kHz)", a, r)
    assert r < REL_TOL


def test_ltx23_defaults_are_ltx_pipelines_constants() -> None:
    """The 2.3 presets' defaults are ``LTX_2_3_PARAMS`` of the installed ltx-pipelines, field by field."""
    from ltx_pipelines.utils.constants import LTX_2_3_PARAMS

    from ltxserve.presets import LTX23_AUDIO, LTX23_STEPS, LTX23_VIDEO, PRESETS

    assert LTX23_STEPS == LTX_2_3_PARAMS.num_inference_steps == PRESETS["2.3-dev"].default_steps
    for ours, theirs in (
        (LTX23_VIDEO, LTX_2_3_PARAMS.video_guider_params),
        (LTX23_AUDIO, LTX_2_3_PARAMS.audio_guider_params),
    ):
        assert ours.cfg == theirs.cfg_scale
        assert ours.stg == theirs.stg_scale
        assert ours.rescale == theirs.rescale_scale
        assert ours.modality == theirs.modality_scale
        assert list(ours.stg_blocks) == list(theirs.stg_blocks)
        assert theirs.skip_step == 0  # diffusers has no step skipping: every step is guided
    assert PRESETS["2.3-dev"].default_guidance == LTX_2_3_PARAMS.video_guider_params.cfg_scale
    kwargs = PRESETS["2.3-dev"].sampling(LTX23_STEPS, LTX23_VIDEO.cfg).kwargs
    assert kwargs["audio_guidance_scale"] == LTX_2_3_PARAMS.audio_guider_params.cfg_scale
    assert kwargs["spatio_temporal_guidance_blocks"] == list(LTX_2_3_PARAMS.video_guider_params.stg_blocks)


def test_ltx23_dev_guidance_sampling_matches_ltx_pipelines(
    ltx23: Converted, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 2.3-dev preset's whole stage 1 (LTX_2_3_PARAMS: video CFG 3, audio CFG 7, STG, rescale
    0.7, modality 3; cross timestep) against ltx-pipelines' multi_modal_guider_denoising_func. STG
    moves to block 1: the tiny transformer has 2 blocks, so block 28 would perturb nothing."""
    from dataclasses import replace

    from ltx_core.components.guiders import MultiModalGuider
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.model.transformer.model import X0Model
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT, LTX_2_3_PARAMS
    from ltx_pipelines.utils.helpers import multi_modal_guider_denoising_func

    from ltxserve import presets
    from ltxserve.config import Settings
    from ltxserve.engine import Engine, GenerationJob
    from ltxserve.engine.engine import negative_prompt
    from tests.parity import test_parity_sampling as sampling

    # the tiny Gemma's width (the real 2.3 file is split with Gemma-3 12B's 3840)
    monkeypatch.setattr(checkpoints, "GEMMA3_HIDDEN", TEXT_HIDDEN)
    monkeypatch.setattr(presets, "LTX23_VIDEO", replace(presets.LTX23_VIDEO, stg_blocks=(1,)))
    monkeypatch.setattr(presets, "LTX23_AUDIO", replace(presets.LTX23_AUDIO, stg_blocks=(1,)))
    engine = Engine.load(
        Settings(
            data_dir=tmp_path,
            model_path=str(ltx23.checkpoint),
            text_encoder_path=str(tiny_model_dir),
            max_sequence_length=128,
            two_stage="off",
        )
    )
    assert engine.preset.name == "2.3-dev"  # from the file name
    job = GenerationJob(**{**sampling.JOB.__dict__, "steps": 4, "guidance": 3.0})
    assert negative_prompt(job, True) == DEFAULT_NEGATIVE_PROMPT
    embeds = engine.encode(job.prompt, negative_prompt(job, True), True)
    v_pos, a_pos = sampling._contexts(ltx23, engine, embeds, "pos")
    v_neg, a_neg = sampling._contexts(ltx23, engine, embeds, "neg")
    video = replace(LTX_2_3_PARAMS.video_guider_params, stg_blocks=[1])
    audio = replace(LTX_2_3_PARAMS.audio_guider_params, stg_blocks=[1])
    denoise = multi_modal_guider_denoising_func(
        MultiModalGuider(video, v_neg),
        MultiModalGuider(audio, a_neg),
        v_pos,
        a_pos,
        X0Model(ltx23.reference.transformer),
    )
    with torch.no_grad():
        theirs = sampling._reference(sampling.SHAPE, LTX2Scheduler().execute(job.steps), denoise)
        ours = sampling._ours(engine, job, sampling.SHAPE)
    sampling._compare("LTX-2.3 dev guidance, 4 steps", ours, theirs, ltx23, engine)
