"""One command on a GPU machine, no downloads: full-size LTX-2 19B speed, ltxserve vs plain diffusers.

    python bench/gpu.py                    # every section, all visible GPUs; writes bench/RESULTS.md
    python bench/gpu.py --sections e2e,attention --repeats 3 --no-write
    python bench/gpu.py --smoke            # the same code on the tiny config on CPU (tests run this)

The model is LTX-2.0 built from the configs of diffusers' conversion script
(``ltxserve.engine.checkpoints.LTX2_0_CONFIGS``) with **random bf16 weights**, created on the meta
device and materialized directly on the GPU; the text embeddings are random tensors of the shape
Gemma-3 12B gives (no Gemma weights are needed). Random weights output noise, so the figures are
speed, memory and numerical agreement, not quality.

Sections (``--sections``):

* ``e2e``: 768x512x121 distilled (8 steps, no CFG), 768x512x121 dev (40 steps, CFG 4), 1280x704x121
  two-stage (distilled): ltxserve's ``Engine`` against a plain ``LTX2Pipeline`` call with the same
  settings, A and B interleaved over ``--repeats``; time per step, denoise, VAE decode, file
  encode, end to end, peak memory, MFU (FLOPs counted per transformer call from its shapes; the
  formula is printed).
* ``attention``: every attention backend diffusers' dispatcher can run here (SDPA, FlashAttention
  2/3, cuDNN, Sage, ...), 8 distilled steps, PSNR of the decoded frames against SDPA.
* ``compile``: ``torch.compile`` (default and ``reduce-overhead``, i.e. CUDA graphs) vs eager.
* ``fp8``: FP8 compute (torchao's dynamic float8 activations and weights, when installed) vs bf16,
  with PSNR.
* ``enhance``: prompt enhancement alone on a random Gemma-3 12B: up to 512 new tokens, dynamic
  KV cache vs static cache + ``torch.compile``, and 4 prompts batched (greedy, so "exact" means the
  same tokens).
* ``scaling``: one job over 1, 2, 4, 8 visible GPUs (``engine.parallel``: guidance parallelism
  when CFG is on, Ulysses otherwise), denoise time and speed-up.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import method  # bench/method.py: interleaved A/B pairs, spread, verdict
import numpy as np
import torch

from ltxserve.config import Settings
from ltxserve.engine import Engine, GenerationJob
from ltxserve.engine.types import ModelSource

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## GPU: full-size LTX-2 19B, random weights (`bench/gpu.py`)"
SECTIONS = ("e2e", "attention", "compile", "fp8", "enhance", "scaling")

#: Dense bf16 tensor-core peak (TFLOP/s) by device name fragment; ``--peak-tflops`` overrides.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.4,  # SXM
    "H20": 148.0,
    "B200": 2250.0,
    "GB200": 2500.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.2,
}


@dataclass(frozen=True)
class Case:
    name: str
    preset: str  # dev | distilled
    width: int
    height: int
    steps: int
    guidance: float
    duration: int = 5  # 5 s at 24 fps: 120 frames asked, 121 generated
    fps: int = 24

    def job(self, seed: int = 0) -> GenerationJob:
        return GenerationJob(
            prompt="benchmark",
            negative_prompt="worst quality",
            width=self.width,
            height=self.height,
            duration=self.duration,
            fps=self.fps,
            steps=self.steps,
            guidance=self.guidance,
            seeds=(seed,),
        )


FULL_CASES = (
    Case("768x512x121 distilled, 8 steps, CFG 1", "distilled", 768, 512, 8, 1.0),
    Case("768x512x121 dev, 40 steps, CFG 4", "dev", 768, 512, 40, 4.0),
    Case("1280x704x121 two-stage (distilled)", "distilled", 1280, 704, 8, 1.0),
)
SMOKE_CASES = (
    Case("64x64 distilled, 8 steps, CFG 1", "distilled", 64, 64, 8, 1.0, duration=1, fps=8),
    Case("64x64 dev, 2 steps, CFG 4", "dev", 64, 64, 2, 4.0, duration=1, fps=8),
    Case("128x128 two-stage (distilled)", "distilled", 128, 128, 8, 1.0, duration=1, fps=8),
)
#: The denoise-only variants (attention, compile, fp8) on the full model, and in the smoke run.
VARIANT_CASE = FULL_CASES[0]
SMOKE_VARIANT_CASE = Case("64x64 dev, 2 steps, CFG 1", "dev", 64, 64, 2, 1.0, duration=1, fps=8)


# --------------------------------------------------------------------------- model


@dataclass
class Model:
    """The pipelines (one set of weights), the upsampler and what the text encoder would give."""

    t2v: Any
    i2v: Any
    upsampler: Any
    text_width: int  # caption_channels x text_proj_in_factor: Gemma's stacked hidden states
    text_len: int
    device: torch.device
    dtype: torch.dtype
    smoke: bool


def _materialize(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, seed: int) -> Any:
    """Meta-device module -> random weights on ``device``: fan-in scaled normal for matrices and
    convolutions, ones for norm scales, zeros for biases (keeps activations finite through 48 blocks)."""
    module.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
            elif name.endswith("bias"):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
        for _name, b in module.named_buffers():
            if b.is_floating_point():
                b.zero_()
    return module.to(dtype).eval()


def build_model(smoke: bool, device: torch.device, seed: int = 0) -> Model:
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2ImageToVideoPipeline,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplePipeline, LTX2TextConnectors
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    if smoke:
        from ltxserve.engine.tiny import TinyModelConfig, build_tiny_pipeline, build_tiny_upsampler

        cfg = TinyModelConfig(text_registers=16)
        pipe = build_tiny_pipeline(cfg)
        pipe.text_encoder = None  # as on the GPU: random embeddings, no Gemma
        pipe.to(device)
        up = build_tiny_upsampler(cfg).to(device)
        dtype = torch.float32
        text_len = 64
    else:
        from ltxserve.engine.checkpoints import LTX2_0_CONFIGS as C

        dtype = torch.bfloat16
        parts: dict[str, Any] = {}
        classes = {
            "transformer": LTX2VideoTransformer3DModel,
            "vae": AutoencoderKLLTX2Video,
            "audio_vae": AutoencoderKLLTX2Audio,
            "vocoder": LTX2Vocoder,
            "connectors": LTX2TextConnectors,
            "latent_upsampler": LTX2LatentUpsamplerModel,
        }
        for i, (name, cls) in enumerate(classes.items()):
            with torch.device("meta"):
                module = cls.from_config(C[name])
            parts[name] = _materialize(module, device, dtype, seed + i)
        up = parts.pop("latent_upsampler")
        pipe = LTX2Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(C["scheduler"]),
            text_encoder=None,
            tokenizer=None,
            **parts,
        )
        text_len = 1024
    pipe.set_progress_bar_config(disable=True)
    i2v = LTX2ImageToVideoPipeline(**pipe.components)
    i2v.set_progress_bar_config(disable=True)
    upsampler = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=up)
    upsampler.set_progress_bar_config(disable=True)
    c = pipe.connectors.config
    return Model(
        pipe, i2v, upsampler, c.caption_channels * c.text_proj_in_factor, text_len, device, dtype, smoke
    )


def random_embeds(model: Model, cfg: bool, seed: int = 0) -> dict[str, Any]:
    """What ``Engine.encode`` returns, with random values of Gemma's shape: (1, L, channels x layers)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def emb() -> torch.Tensor:
        return torch.randn(1, model.text_len, model.text_width, generator=gen).to(model.device, model.dtype)

    mask = torch.ones(1, model.text_len, dtype=torch.long, device=model.device)
    return {"pos": emb(), "pos_mask": mask, "neg": emb() if cfg else None, "neg_mask": mask if cfg else None}


def engine_for(model: Model, case: Case, **settings: Any) -> Engine:
    """ltxserve's Engine over the in-memory pipelines, with the random embeddings as its encoder."""
    base = {
        "model_preset": case.preset,
        "device": model.device.type,
        "dtype": "bfloat16" if model.dtype == torch.bfloat16 else "float32",
        "text_encoder_offload": "off",
        "max_sequence_length": model.text_len,
        "two_stage_above_pixels": (64 * 64) if model.smoke else 768 * 512,
        "max_video_tokens": 10**7,
    }
    engine = Engine(
        Settings(**{**base, **settings}),
        model.t2v,
        model.i2v,
        ModelSource("random-weights LTX-2.0", is_tiny=model.smoke),
        model.upsampler,
    )
    engine._encode = lambda prompt, negative, cfg: random_embeds(model, cfg)  # type: ignore[method-assign]
    return engine


def plain_call(model: Model, engine: Engine, case: Case, seed: int = 0, output_type: str = "np") -> Any:
    """What a diffusers user writes for the same settings: one pipeline call (single-stage only)."""
    sampling = engine.preset.sampling(case.steps, case.guidance)
    embeds = random_embeds(model, sampling.cfg)
    kwargs: dict[str, Any] = {
        "prompt_embeds": embeds["pos"],
        "prompt_attention_mask": embeds["pos_mask"],
        "width": case.width,
        "height": case.height,
        "num_frames": case.duration * case.fps + 1,
        "frame_rate": float(case.fps),
        "num_inference_steps": sampling.steps,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": output_type,
        "return_dict": False,
        "max_sequence_length": model.text_len,
        **sampling.kwargs,
    }
    if sampling.sigmas is not None:
        kwargs["sigmas"] = list(sampling.sigmas)
    if sampling.cfg:
        kwargs["negative_prompt_embeds"] = embeds["neg"]
        kwargs["negative_prompt_attention_mask"] = embeds["neg_mask"]
    return model.t2v(**kwargs)


# --------------------------------------------------------------------------- measuring


def transformer_flops(config: Any, video: int, audio: int, text: int) -> float:
    """FLOPs of one LTX-2 transformer row-pass (one batch row): 2 per multiply-add of every matmul.

    Per block, with d / da the video / audio widths (heads x head dim), Nv / Na / L the video /
    audio / text tokens: projections (q, k, v, out) of video self-attention 8 Nv d^2, of the
    video-text cross-attention 4 Nv d^2 + 4 L d^2, of the audio ones 8 Na da^2 and 4 Na da^2 +
    4 L da^2, of audio-to-video and video-to-audio 4 Nv d da + 4 Na da^2 each; attention scores
    and values 4 Sq Skv width for each (Nv Nv d, Nv L d, Na Na da, Na L da, 2 Nv Na da);
    feed-forward 16 Nv d^2 + 16 Na da^2. Outside the blocks: the caption projections
    (2 L c d + 2 L d d, 2 L c da + 2 L da da, c = caption channels) and proj_in / proj_out.
    """
    d = config.num_attention_heads * config.attention_head_dim
    da = config.audio_num_attention_heads * config.audio_attention_head_dim
    nv, na, ln = video, audio, text
    proj = 8 * nv * d * d + 4 * nv * d * d + 4 * ln * d * d
    proj += 8 * na * da * da + 4 * na * da * da + 4 * ln * da * da
    proj += 2 * (4 * nv * d * da + 4 * na * da * da)
    attn = 4 * (nv * nv * d + nv * ln * d + na * na * da + na * ln * da + 2 * nv * na * da)
    ff = 16 * nv * d * d + 16 * na * da * da
    c = config.caption_channels
    outside = 2 * ln * c * d + 2 * ln * d * d + 2 * ln * c * da + 2 * ln * da * da
    outside += 2 * nv * config.in_channels * d + 2 * nv * d * config.out_channels
    outside += 2 * na * config.audio_in_channels * da + 2 * na * da * config.audio_out_channels
    return float(config.num_layers * (proj + attn + ff) + outside)


@contextlib.contextmanager
def count_flops(transformer: Any) -> Iterator[list[float]]:
    """Sum ``transformer_flops`` over the calls made inside (rows x shapes of each call)."""
    total = [0.0]
    model = getattr(transformer, "_orig_mod", transformer)

    def hook(_m: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        h, a, e = kwargs["hidden_states"], kwargs["audio_hidden_states"], kwargs["encoder_hidden_states"]
        total[0] += h.shape[0] * transformer_flops(model.config, h.shape[1], a.shape[1], e.shape[1])

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield total
    finally:
        handle.remove()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[list[float]]:
    out = [0.0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield out
    finally:
        if device.type == "cuda":
            out[0] = torch.cuda.max_memory_allocated(device) / 2**30


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    peak = 255.0 if a.dtype == np.uint8 else 1.0
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


class Report:
    """Lines for the terminal and for bench/RESULTS.md."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


# --------------------------------------------------------------------------- sections


def section_e2e(model: Model, cases: tuple[Case, ...], args: argparse.Namespace, out: Report) -> None:
    from ltxserve.media.encode import encode_video

    peak = peak_tflops(model.device, args.peak_tflops)
    out("### End to end: ltxserve Engine vs a plain diffusers call")
    doc = (transformer_flops.__doc__ or "").split("\n\n", 1)[1]
    out("FLOPs per transformer row-pass (summed over the calls of the denoise, rows x shapes):")
    out("\n".join("  " + line.strip() for line in doc.strip().splitlines()))
    for case in cases:
        engine = engine_for(model, case)
        job = case.job()
        plan = engine.plan(job)
        tmp = Path(tempfile.mkdtemp(prefix="ltxserve-gpu-bench-"))

        def ltxserve(engine: Engine = engine, job: GenerationJob = job, tmp: Path = tmp) -> dict[str, float]:
            with peak_memory(model.device) as mem, count_flops(model.t2v.transformer) as flops:
                sync(model.device)
                t0 = time.perf_counter()
                (res,) = engine.generate(job)
                t1 = time.perf_counter()
                encode_video(tmp / "a.mp4", res.frames, res.fps, res.audio, res.sample_rate)
                t2 = time.perf_counter()
            tm = res.timings
            return {
                "e2e": t2 - t0,
                "generate": t1 - t0,
                "denoise": tm.denoise,
                "decode": tm.video_decode + tm.audio_decode,
                "encode": t2 - t1,
                "peak_gib": mem[0],
                "flops": flops[0],
            }

        def plain(engine: Engine = engine, case: Case = case, tmp: Path = tmp) -> dict[str, float]:
            with peak_memory(model.device) as mem, count_flops(model.t2v.transformer) as flops:
                sync(model.device)
                t0 = time.perf_counter()
                frames, audio = plain_call(model, engine, case)
                sync(model.device)
                t1 = time.perf_counter()
                u8 = (np.asarray(frames[0]) * 255).round().astype(np.uint8)
                sound = audio[0].float().cpu().numpy() if torch.is_tensor(audio) else np.asarray(audio[0])
                encode_video(tmp / "b.mp4", u8, case.fps, sound, engine.sample_rate)
                t2 = time.perf_counter()
            return {
                "e2e": t2 - t0,
                "generate": t1 - t0,
                "encode": t2 - t1,
                "peak_gib": mem[0],
                "flops": flops[0],
            }

        ltxserve()  # warm-up (kernels, allocator) outside the measurement
        lx: list[dict[str, float]] = []
        pl: list[dict[str, float]] = []

        def run_ltxserve(fn: Callable[[], dict[str, float]] = ltxserve, rows: list[Any] = lx) -> float:
            rows.append(fn())
            return float(rows[-1]["e2e"])

        def run_plain(fn: Callable[[], dict[str, float]] = plain, rows: list[Any] = pl) -> float:
            rows.append(fn())
            return float(rows[-1]["e2e"])

        out()
        out(
            f"{case.name}: {plan.steps} steps, {'two-stage' if plan.two_stage else 'one stage'}, "
            f"CFG {'on' if plan.cfg else 'off'}, {plan.estimate.video_tokens:,} video tokens"
        )
        if plan.two_stage:  # diffusers has no one-call two-stage pipeline for LTX-2: ltxserve alone
            for _ in range(args.repeats):
                run_ltxserve()
            out(f"  ltxserve end to end {method.Side('e2e', [r['e2e'] for r in lx]).spread()}")
        else:
            cmp = method.compare(
                ("plain diffusers", run_plain), ("ltxserve", run_ltxserve), args.repeats, warmup=0
            )
            out("  end to end (generate + file encode):")
            out(cmp.report())
            gen = method.ratio([r["generate"] for r in pl], [r["generate"] for r in lx])
            out(f"  generate only, ltxserve / plain diffusers: {gen} ({gen.verdict()})")
            out(
                f"  peak memory: plain {max(r['peak_gib'] for r in pl):.1f} GiB, "
                f"ltxserve {max(r['peak_gib'] for r in lx):.1f} GiB"
            )
        den = method.Side("denoise", [r["denoise"] for r in lx])
        out(f"  ltxserve denoise {den.spread()}, per step {den.median / plan.steps:.3f} s")
        out(
            f"  ltxserve decode {method.Side('d', [r['decode'] for r in lx]).spread()}, "
            f"file encode {method.Side('e', [r['encode'] for r in lx]).spread()}"
        )
        flops = statistics.median(r["flops"] for r in lx)
        tflops = flops / den.median / 1e12
        mfu = f", MFU {100 * tflops / peak:.1f}% of {peak:g} TFLOP/s" if peak else ""
        out(f"  transformer FLOPs in the denoise {flops:.3e}: {tflops:.1f} TFLOP/s{mfu}")


def _denoise(model: Model, engine: Engine, case: Case) -> tuple[float, Any]:
    sync(model.device)
    t0 = time.perf_counter()
    video, _audio = plain_call(model, engine, case, output_type="latent")
    sync(model.device)
    return time.perf_counter() - t0, video


def _frames(model: Model, case: Case, video: Any) -> np.ndarray:
    from ltxserve.engine import decode

    return decode.decode_video(model.t2v, video, chunked=False, keep_frames=case.duration * case.fps)


class Variants:
    """Denoise-only A/B of transformer variants against the eager bf16 SDPA reference, interleaved
    (``method.compare``); each variant is installed before its run and removed after it, and the
    PSNR of its decoded frames is taken against the reference's."""

    def __init__(self, model: Model, case: Case, args: argparse.Namespace, out: Report) -> None:
        self.model, self.case, self.args, self.out = model, case, args, out
        self.engine = engine_for(model, case)
        self.ref_latents: Any = None
        self.ref_frames: np.ndarray | None = None

    def reference(self) -> float:
        seconds, self.ref_latents = _denoise(self.model, self.engine, self.case)
        return seconds

    def compare(self, label: str, install: Callable[[], Callable[[], None]]) -> None:
        latents: list[Any] = [None]

        def run() -> float:
            restore = install()
            try:
                seconds, latents[0] = _denoise(self.model, self.engine, self.case)
            finally:
                restore()
            return seconds

        try:
            cmp = method.compare(("eager SDPA", self.reference), (label, run), self.args.repeats, warmup=1)
        except Exception as exc:  # not installed / not for this GPU: say why, go on
            self.out(f"  {label}: unavailable ({str(exc).splitlines()[0][:160]})")
            return
        if self.ref_frames is None:
            self.ref_frames = _frames(self.model, self.case, self.ref_latents)
        quality = psnr(_frames(self.model, self.case, latents[0]), self.ref_frames)
        self.out(cmp.report())
        self.out(f"  PSNR of {label} against eager SDPA: {quality:.1f} dB")


def _swap_transformer(model: Model, replacement: Any) -> Callable[[], Callable[[], None]]:
    def install() -> Callable[[], None]:
        original = model.t2v.transformer
        model.t2v.transformer = replacement

        def restore() -> None:
            model.t2v.transformer = original

        return restore

    return install


def section_attention(model: Model, case: Case, args: argparse.Namespace, out: Report) -> None:
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    from ltxserve.engine.accel import set_attention_backend

    out(f"### Attention backends (diffusers dispatcher): {case.name}, denoise only")
    variants = Variants(model, case, args, out)
    wanted = ["flash", "_flash_3", "_native_cudnn", "_native_flash", "_native_efficient", "sage", "flex"]
    if model.smoke:
        wanted = ["_native_math"]  # what runs on a CPU (flex is a debug path there, uncompiled)
    available = {b.value for b in AttentionBackendName}
    for name in (n for n in wanted if n in available):
        try:
            _check_attention_backend_requirements(AttentionBackendName(name))
        except Exception as exc:
            out(f"  {name}: unavailable ({str(exc).splitlines()[0][:160]})")
            continue

        def install(name: str = name) -> Callable[[], None]:
            set_attention_backend(model.t2v.transformer, name)
            return lambda: set_attention_backend(model.t2v.transformer, "native")

        variants.compare(f"attention {name}", install)


def section_compile(model: Model, case: Case, args: argparse.Namespace, out: Report) -> None:
    out(f"### torch.compile: {case.name}, denoise only")
    variants = Variants(model, case, args, out)
    modes = ["default"] + (["reduce-overhead"] if model.device.type == "cuda" else [])
    # smoke: dynamo's tracing only (the "eager" backend): inductor's C++ build takes minutes on a CPU
    backend = "eager" if model.smoke else "inductor"
    for mode in modes:
        compiled = torch.compile(model.t2v.transformer, mode=mode, dynamic=False, backend=backend)
        label = f"compile {mode}" + (" (CUDA graphs)" if mode == "reduce-overhead" else "")
        variants.compare(label, _swap_transformer(model, compiled))
        torch._dynamo.reset()


def section_fp8(model: Model, case: Case, args: argparse.Namespace, out: Report) -> None:
    out(
        f"### FP8 compute (torchao float8 dynamic activations + weights, compiled): {case.name}, denoise only"
    )
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_
    except ImportError as exc:
        out(f"  torchao not installed ({exc}): pip install torchao")
        return
    if model.device.type != "cuda":
        out("  FP8 matmuls need a CUDA GPU with FP8 tensor cores (sm_89+): not run on CPU")
        return
    import copy

    quantized = copy.deepcopy(model.t2v.transformer)
    quantize_(quantized, Float8DynamicActivationFloat8WeightConfig())
    Variants(model, case, args, out).compare(
        "fp8 + compile (lossy, opt-in)", _swap_transformer(model, torch.compile(quantized, dynamic=False))
    )
    del quantized
    torch._dynamo.reset()
    torch.cuda.empty_cache()


def section_enhance(model: Model, args: argparse.Namespace, out: Report) -> None:
    """Prompt enhancement: Gemma-3 12B (random weights) writing 512 tokens, greedy."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    new_tokens = 16 if model.smoke else 512
    if model.smoke:
        cfg = Gemma3TextConfig(
            vocab_size=512,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=64,
        )
    else:  # Gemma-3 12B's text tower
        cfg = Gemma3TextConfig(
            vocab_size=262_208,
            hidden_size=3840,
            intermediate_size=15_360,
            num_hidden_layers=48,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=256,
            sliding_window=1024,
            rope_theta=1_000_000.0,
            query_pre_attn_scalar=256,
        )
    with torch.device("meta"):
        lm = Gemma3ForCausalLM(cfg)
    lm = _materialize(lm, model.device, model.dtype, seed=7)
    gen = torch.Generator("cpu").manual_seed(0)
    prompt = torch.randint(10, cfg.vocab_size, (1, 256), generator=gen).to(model.device)
    out(
        f"### Prompt enhancement alone: Gemma-3 {'tiny' if model.smoke else '12B'} (random weights), "
        f"{new_tokens} new tokens, greedy"
    )
    kw = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}

    def run(ids: torch.Tensor, **extra: Any) -> tuple[float, torch.Tensor]:
        sync(model.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            tokens = lm.generate(ids, attention_mask=torch.ones_like(ids), **kw, **extra)
        sync(model.device)
        return time.perf_counter() - t0, tokens

    run(prompt)  # warm-up
    base = [run(prompt) for _ in range(args.repeats)]
    t_base = statistics.median(t for t, _ in base)
    side = method.Side("dynamic", [t for t, _ in base])
    out(f"  dynamic KV cache (default)  {side.spread()}  {new_tokens / t_base:.0f} tokens/s")
    try:
        if model.smoke:
            lm.forward = torch.compile(lm.forward, backend="eager")
        else:
            lm.forward = torch.compile(lm.forward, mode="reduce-overhead")
        run(prompt, cache_implementation="static")  # compile
        fast = [run(prompt, cache_implementation="static") for _ in range(args.repeats)]
        same = all(torch.equal(t, base[0][1]) for _, t in fast)
        t_fast = statistics.median(t for t, _ in fast)
        side = method.Side("static", [t for t, _ in fast])
        out(f"  static cache + compile      {side.spread()}  x{t_base / t_fast:.2f}  same tokens: {same}")
    except Exception as exc:
        out(f"  static cache + compile failed: {str(exc).splitlines()[0][:160]}")
    finally:
        lm.forward = type(lm).forward.__get__(lm)
        torch._dynamo.reset()
    batch = prompt.repeat(4, 1)
    t4, _ = run(batch)
    rate = 4 * new_tokens / t4
    out(f"  4 prompts batched           {t4:8.3f} s  {rate:.0f} tokens/s ({t4 / t_base:.2f}x one)")
    if model.device.type == "cuda":
        torch.cuda.empty_cache()


def _scaling_rank(
    rank: int, world: int, port: int, smoke: bool, case: Case, repeats: int, queue: Any
) -> None:
    """One rank of the scaling run: the model on its GPU, split with ``engine.parallel``."""
    import torch.distributed as dist

    from ltxserve.engine import parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    device = torch.device("cuda", rank) if not smoke else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if smoke:
        torch.set_num_threads(1)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    model = build_model(smoke, device)
    engine = engine_for(model, case)
    if world > 1:
        layout = parallel.choose_layout(
            engine.settings, world, guides=engine.preset.sampling(case.steps, case.guidance).cfg
        )
        parallel.enable(model.t2v.transformer, layout, rank, device)
    plain_call(model, engine, case, output_type="latent")  # warm-up
    times = []
    for _ in range(repeats):
        dist.barrier()
        sync(device)
        t0 = time.perf_counter()
        plain_call(model, engine, case, output_type="latent")
        sync(device)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        queue.put(times)
    dist.barrier()
    dist.destroy_process_group()


def section_scaling(smoke: bool, cases: tuple[Case, ...], args: argparse.Namespace, out: Report) -> None:
    import torch.multiprocessing as mp

    visible = torch.cuda.device_count() if not smoke else 2
    counts = [n for n in (1, 2, 4, 8) if n <= visible]
    what = "CPU processes (gloo)" if smoke else "GPUs"
    out(f"### One job over 1..{max(counts)} {what}: denoise time by rank count")
    for case in cases[:1] if smoke else cases[:2]:  # distilled (Ulysses), dev (guidance + Ulysses)
        base = None
        for n in counts:
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            mp.start_processes(
                _scaling_rank,
                args=(n, port, smoke, case, args.repeats, queue),
                nprocs=n,
                start_method="spawn",
            )
            times = queue.get()
            med = statistics.median(times)
            base = base or med
            side = method.Side(f"{n} ranks", times)
            out(f"  {case.name:40s} {n} rank(s) {side.spread()}  speed-up x{base / med:.2f}")


# --------------------------------------------------------------------------- main


def machine() -> str:
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        gpu = f"{len(names)} x {names[0]}"
    else:
        gpu = "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}"


def versions() -> str:
    import diffusers
    import transformers

    parts = [
        f"python {platform.python_version()}",
        f"torch {torch.__version__}",
        f"diffusers {diffusers.__version__}",
        f"transformers {transformers.__version__}",
    ]
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}")
    for extra in ("flash_attn", "sageattention", "torchao"):
        with contextlib.suppress(Exception):
            mod = __import__(extra)
            parts.append(f"{extra} {getattr(mod, '__version__', '?')}")
    with contextlib.suppress(Exception):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
        parts.append(f"ltxserve git {rev}")
    return ", ".join(parts)


def write_results(path: Path, body: list[str], command: str) -> None:
    """Replace (or append) this script's section of RESULTS.md."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    header = [
        SECTION,
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- versions: {versions()}",
        f"- command: `{command}`",
        "",
        "```",
    ]
    section = "\n".join([*header, *body, "```", ""])
    # no longer "not run" (run_all.py lists it there until a GPU run exists)
    text = (
        "\n".join(line for line in text.splitlines() if not line.startswith("- `python bench/gpu.py`")) + "\n"
    )
    end_marker = "<!-- --8<-- [end:results] -->"  # run_all.py's docs include ends there
    if SECTION in text:
        before, _, rest = text.partition(SECTION)
        ends = [i for i in (rest.find("\n## "), rest.find("\n<!-- --8<--")) if i >= 0]
        text = before + section + (rest[min(ends) + 1 :] if ends else "")
    elif end_marker in text:
        before, _, rest = text.partition(end_marker)
        text = before.rstrip("\n") + "\n\n" + section + "\n" + end_marker + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU (the test suite's run)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per variant (default 3; smoke 1)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for the MFU")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the RESULTS.md to write")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.smoke else 3)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA GPU here: use --smoke for the CPU run of the same code", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.smoke else torch.device("cuda", 0)
    if args.smoke:
        # one compute thread: on a shared CPU, spinning OpenMP threads turn milliseconds into seconds
        method.pin_threads(1)
    cases = SMOKE_CASES if args.smoke else FULL_CASES
    variant = SMOKE_VARIANT_CASE if args.smoke else VARIANT_CASE
    out = Report()
    out(f"{machine()}; {versions()}")
    t0 = time.perf_counter()
    if set(sections) - {"scaling"}:
        model = build_model(args.smoke, device)
        n = sum(p.numel() for p in model.t2v.transformer.parameters())
        built = time.perf_counter() - t0
        out(f"transformer {n / 1e9:.2f} B parameters ({model.dtype}), built in {built:.1f} s")
        for name in sections:
            if name == "e2e":
                section_e2e(model, cases, args, out)
            elif name == "attention":
                section_attention(model, variant, args, out)
            elif name == "compile":
                section_compile(model, variant, args, out)
            elif name == "fp8":
                section_fp8(model, variant, args, out)
            elif name == "enhance":
                section_enhance(model, args, out)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "scaling" in sections:
        section_scaling(args.smoke, cases, args, out)
    out(f"total {time.perf_counter() - t0:.0f} s")
    if not args.no_write:
        write_results(
            args.results,
            out.lines,
            "python bench/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
