"""Each LTX-2.0 component, loaded from a Lightricks-format release file through ltxserve's checkpoint
path, against ltx-core 1.0.0's own module on identical inputs (float32, CPU, tiny random weights)."""

from __future__ import annotations

import torch
from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.model.transformer.modality import Modality
from ltx_core.tools import AudioLatentTools, VideoLatentTools
from ltx_core.types import AudioLatentShape, VideoLatentShape

from tests.parity.conftest import Converted, record
from tests.parity.reference import TEXT_HIDDEN, TEXT_STATES, errors

#: float32 on CPU: both sides run the same operations in a different order (fused projections,
#: attention kernels), so they agree to rounding; 1e-5 of the output's magnitude is ~100 ulp.
REL_TOL = 1e-5

FPS = 24.0


def _text(batch: int = 1, length: int = 128) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Gemma-like hidden states (one per layer + embeddings), left-padded: 100 real tokens."""
    g = torch.Generator().manual_seed(5)
    states = tuple(torch.randn(batch, length, TEXT_HIDDEN, generator=g) for _ in range(TEXT_STATES))
    mask = torch.zeros(batch, length, dtype=torch.long)
    mask[:, -100:] = 1
    return states, mask


def test_connectors_match_ltx_core(ltx20: Converted) -> None:
    states, mask = _text()
    ref = ltx20.reference.embeddings.process_hidden_states(states, mask, padding_side="left")
    connectors = ltx20.load("connectors")
    packed = torch.stack(states, dim=-1).flatten(2, 3)  # what LTX2Pipeline feeds its connectors
    with torch.no_grad():
        video, audio, out_mask = connectors(packed, mask, padding_side="left")
    assert torch.equal(out_mask.bool(), ref.attention_mask.bool())
    for name, ours, theirs in (
        ("connectors.video", video, ref.video_encoding),
        ("connectors.audio", audio, ref.audio_encoding),
    ):
        a, r = errors(ours, theirs)
        record(name, a, r)
        assert r < REL_TOL, name


def _video_state(frames: int, height: int, width: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    tools = VideoLatentTools(
        VideoLatentPatchifier(1), VideoLatentShape(1, channels, frames, height, width), FPS
    )
    g = torch.Generator().manual_seed(7)
    latent = torch.randn(1, channels, frames, height, width, generator=g)
    state = tools.create_initial_state("cpu", torch.float32, latent)
    return state.latent, state.positions


def _audio_state(frames: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    mel = 16  # latent mel bins: 64 / 4
    tools = AudioLatentTools(AudioPatchifier(1), AudioLatentShape(1, channels // mel, frames, mel))
    g = torch.Generator().manual_seed(8)
    latent = torch.randn(1, channels // mel, frames, mel, generator=g)
    state = tools.create_initial_state("cpu", torch.float32, latent)
    return state.latent, state.positions


def test_transformer_matches_ltx_core(ltx20: Converted) -> None:
    """Video and audio velocities for one step, same sigma on every token (text-to-video)."""
    ref = ltx20.reference
    states, mask = _text()
    enc = ref.embeddings.process_hidden_states(states, mask, padding_side="left")
    frames, height, width = 2, 2, 3
    video, video_pos = _video_state(frames, height, width, 8)
    audio, audio_pos = _audio_state(5, 128)
    sigma = torch.tensor([0.7])

    def modality(latent: torch.Tensor, pos: torch.Tensor, context: torch.Tensor) -> Modality:
        return Modality(
            latent=latent,
            sigma=sigma,
            timesteps=sigma.expand(1, latent.shape[1]),
            positions=pos,
            context=context,
            context_mask=enc.attention_mask,
        )

    with torch.no_grad():
        ref_v, ref_a = ref.transformer(
            modality(video, video_pos, enc.video_encoding),
            modality(audio, audio_pos, enc.audio_encoding),
            BatchedPerturbationConfig.empty(1),
        )
        ours_v, ours_a = ltx20.load("transformer")(
            hidden_states=video,
            audio_hidden_states=audio,
            encoder_hidden_states=enc.video_encoding,
            audio_encoder_hidden_states=enc.audio_encoding,
            timestep=sigma * 1000,
            sigma=sigma * 1000,
            encoder_attention_mask=enc.attention_mask,
            audio_encoder_attention_mask=enc.attention_mask,
            num_frames=frames,
            height=height,
            width=width,
            fps=FPS,
            audio_num_frames=5,
            use_cross_timestep=False,
            return_dict=False,
        )
    for name, ours, theirs in (("transformer.video", ours_v, ref_v), ("transformer.audio", ours_a, ref_a)):
        a, r = errors(ours, theirs)
        record(name, a, r)
        assert r < REL_TOL, name


def test_video_vae_decode_matches_ltx_core(ltx20: Converted) -> None:
    """ltx-core's decoder un-normalizes inside; diffusers' pipelines do it before ``decode``."""
    vae = ltx20.load("vae")
    g = torch.Generator().manual_seed(9)
    latent = torch.randn(1, 8, 2, 2, 2, generator=g)
    with torch.no_grad():
        theirs = ltx20.reference.decoder(latent)
        mean = vae.latents_mean.view(1, -1, 1, 1, 1)
        std = vae.latents_std.view(1, -1, 1, 1, 1)
        ours = vae.decode(latent * std + mean, return_dict=False)[0]
    assert ours.shape == theirs.shape == (1, 3, 9, 64, 64)
    a, r = errors(ours, theirs)
    record("vae.decode", a, r)
    assert r < REL_TOL


def test_video_vae_encode_matches_ltx_core(ltx20: Converted) -> None:
    """The image-to-video conditioning path: pixels -> normalized latent mean."""
    vae = ltx20.load("vae")
    g = torch.Generator().manual_seed(10)
    pixels = torch.rand(1, 3, 9, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        theirs = ltx20.reference.encoder(pixels)
        mean = vae.latents_mean.view(1, -1, 1, 1, 1)
        std = vae.latents_std.view(1, -1, 1, 1, 1)
        ours = (vae.encode(pixels).latent_dist.mode() - mean) / std
    a, r = errors(ours, theirs)
    record("vae.encode", a, r)
    assert r < REL_TOL


def test_audio_vae_and_vocoder_match_ltx_core(ltx20: Converted) -> None:
    audio_vae = ltx20.load("audio_vae")
    vocoder = ltx20.load("vocoder")
    g = torch.Generator().manual_seed(11)
    latent = torch.randn(1, 8, 6, 16, generator=g)  # (B, C, frames, latent mel bins)
    with torch.no_grad():
        theirs_mel = ltx20.reference.audio_decoder(latent)
        # diffusers' pipeline un-normalizes patchified latents with the VAE's statistics, then decodes
        patched = latent.permute(0, 2, 1, 3).flatten(2)
        patched = patched * audio_vae.latents_std + audio_vae.latents_mean
        unpatched = patched.view(1, 6, 8, 16).permute(0, 2, 1, 3)
        ours_mel = audio_vae.decode(unpatched, return_dict=False)[0]
        a, r = errors(ours_mel, theirs_mel)
        record("audio_vae.decode", a, r)
        assert r < REL_TOL
        theirs_wave = ltx20.reference.vocoder(theirs_mel)
        ours_wave = vocoder(ours_mel)
    assert 0 < theirs_wave.abs().max() < 1  # inside tanh's range: saturation would hide a difference
    a, r = errors(ours_wave, theirs_wave)
    record("vocoder", a, r)
    assert r < REL_TOL


def test_cross_attention_timestep_per_family(ltx20: Converted) -> None:
    """Image-to-video holds latent frame 0 at timestep 0 while audio is at sigma. Lightricks' code
    changed how the audio-video cross-attention is modulated then: LTX-2.0's release (LTX-2 repo
    9ce438b, 2026-01-05, through 4dbd99e) uses each modality's own timesteps; from the LTX-2.3
    release (822ce3c, 2026-03-04; ltx-core 1.0.0) the other modality's sigma; since 203d484
    (2026-05-28) scale/shift from its own and the gate from the other's. diffusers' switch is
    ``use_cross_timestep`` (False: LTX-2.0, True: LTX-2.3, its docs say). ltxserve pins LTX-2.0 to
    its release behaviour (False); this shows the reference it is compared with here (ltx-core
    1.0.0) is the True variant, and how large the difference is."""
    from ltxserve.presets import ltx20_guidance_kwargs

    assert ltx20_guidance_kwargs(4.0)["use_cross_timestep"] is False
    ref = ltx20.reference
    states, mask = _text()
    enc = ref.embeddings.process_hidden_states(states, mask, padding_side="left")
    frames, height, width = 2, 2, 3
    video, video_pos = _video_state(frames, height, width, 8)
    audio, audio_pos = _audio_state(5, 128)
    sigma = torch.tensor([0.7])
    video_t = sigma.expand(1, video.shape[1]).clone()
    video_t[:, : height * width] = 0.0  # latent frame 0: the conditioning image, clean
    audio_t = sigma.expand(1, audio.shape[1])
    with torch.no_grad():
        ref_v, ref_a = ref.transformer(
            Modality(video, sigma, video_t, video_pos, enc.video_encoding, context_mask=enc.attention_mask),
            Modality(audio, sigma, audio_t, audio_pos, enc.audio_encoding, context_mask=enc.attention_mask),
            BatchedPerturbationConfig.empty(1),
        )
        transformer = ltx20.load("transformer")
        outs = {}
        for cross in (True, False):
            outs[cross] = transformer(
                hidden_states=video,
                audio_hidden_states=audio,
                encoder_hidden_states=enc.video_encoding,
                audio_encoder_hidden_states=enc.audio_encoding,
                timestep=video_t * 1000,
                audio_timestep=audio_t * 1000,
                sigma=sigma * 1000,
                audio_sigma=sigma * 1000,
                encoder_attention_mask=enc.attention_mask,
                audio_encoder_attention_mask=enc.attention_mask,
                num_frames=frames,
                height=height,
                width=width,
                fps=FPS,
                audio_num_frames=5,
                use_cross_timestep=cross,
                return_dict=False,
            )
    for name, (ours_v, ours_a) in (
        ("cross (ltx-core 1.0.0)", outs[True]),
        ("own (LTX-2.0 release)", outs[False]),
    ):
        a, r = errors(ours_v, ref_v)
        record(f"transformer I2V timesteps, {name}: video", a, r)
        a, r = errors(ours_a, ref_a)
        record(f"transformer I2V timesteps, {name}: audio", a, r)
    assert errors(outs[True][0], ref_v)[1] < REL_TOL
    assert errors(outs[True][1], ref_a)[1] < REL_TOL
    assert errors(outs[False][0], ref_v)[1] > 1e-3  # the pin matters: a visible difference
