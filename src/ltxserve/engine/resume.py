"""Step checkpoints: capture a running denoise every K steps or T seconds, resume it bit-for-bit.

A generation that dies mid-denoise (spot GPU reclaimed, worker killed) restarts from its last
checkpoint instead of step 0. A ``StepState`` holds everything the rest of the run depends on:

- the packed video and audio latents after the last finished step (float32, as the pipeline holds
  them: normalized), or, once a stage is complete, that stage's output (what ``output_type="latent"``
  returns);
- the stage (1, or 2 = the two-stage refine) and the steps done in it;
- the stage's exact scheduler schedule (``sigmas`` with the terminal 0, ``timesteps``): the resumed
  call runs ``sigmas[step:]`` as given, not a re-computed (re-shifted) schedule;
- the state of every per-result ``torch.Generator`` (the refine draws its re-noise from them).

Resuming uses diffusers' own ``LTX2Pipeline`` / ``LTX2ImageToVideoPipeline`` unchanged: the call
gets the remaining steps, its ``prepare_latents`` / ``prepare_audio_latents`` hand back the saved
latents (no random draws, no re-normalization), and its scheduler is a copy whose
``set_timesteps`` installs the saved tail of the schedule. Every later operation then sees the
same tensors as in the uninterrupted run, so the result is identical (tests/engine/test_resume.py).

A state carries a validity ``key`` (model fingerprint, job shape, sampling, code versions);
``Engine`` refuses a state whose key differs and restarts the job from step 0, with a log line.
States are (de)serialized with ``torch.save`` / ``torch.load(weights_only=True)``: a tampered
blob cannot run code.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Bumped whenever what a state holds or how it is replayed changes.
FORMAT = 1


class GenerationPreempted(Exception):
    """Raised out of the denoising loop after the preemption checkpoint was handed over."""

    def __init__(self, state: StepState | None) -> None:
        super().__init__("generation preempted" + ("" if state is None else f" at step {state.progress}"))
        self.state = state


@dataclass
class StepState:
    """One checkpoint of one pipeline group (the results generated in one call)."""

    key: str  # validity key (``state_key``)
    seeds: tuple[int, ...]  # the group's seeds
    stage: int  # 1, or 2 = refine
    step: int  # denoising steps done in this stage
    finished: bool  # the stage is complete: video/audio are its output (unpacked, denormalized)
    progress: int  # steps done over the whole job (as the progress callback counts them)
    video: torch.Tensor
    audio: torch.Tensor
    sigmas: torch.Tensor  # the stage's schedule, terminal 0 included
    timesteps: torch.Tensor
    generators: list[torch.Tensor] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(
            {
                "format": FORMAT,
                "key": self.key,
                "seeds": list(self.seeds),
                "stage": self.stage,
                "step": self.step,
                "finished": self.finished,
                "progress": self.progress,
                "video": self.video,
                "audio": self.audio,
                "sigmas": self.sigmas,
                "timesteps": self.timesteps,
                "generators": list(self.generators),
            },
            buf,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> StepState:
        """Parse a stored state; ``ValueError`` for anything that is not one of ours."""
        import torch

        try:
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable blob is the same refusal
            raise ValueError(f"unreadable checkpoint: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError("checkpoint format differs")
        try:
            return cls(
                key=str(raw["key"]),
                seeds=tuple(int(s) for s in raw["seeds"]),
                stage=int(raw["stage"]),
                step=int(raw["step"]),
                finished=bool(raw["finished"]),
                progress=int(raw["progress"]),
                video=raw["video"],
                audio=raw["audio"],
                sigmas=raw["sigmas"],
                timesteps=raw["timesteps"],
                generators=list(raw["generators"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed checkpoint: {exc}") from exc


@dataclass
class Checkpointing:
    """What the caller of ``Engine.generate`` wants done about checkpoints.

    ``save`` gets each state (CPU tensors, safe to keep) and should return quickly; the worker
    writes it to the blob store. It is called every ``every_steps`` steps or ``every_seconds``
    seconds, whichever comes first (0 turns a criterion off). ``resume`` is the last state of an
    earlier attempt. When ``preempt`` is set, the engine checkpoints at the next step (or stage
    end) and raises ``GenerationPreempted``.
    """

    save: Callable[[StepState], None]
    every_steps: int = 0
    every_seconds: float = 0.0
    resume: StepState | None = None
    preempt: threading.Event | None = None
    # bookkeeping (per job)
    _last_progress: int = 0
    _last_time: float = field(default_factory=time.monotonic)

    def due(self, progress: int) -> bool:
        if self.preempt is not None and self.preempt.is_set():
            return True
        if self.every_steps > 0 and progress - self._last_progress >= self.every_steps:
            return True
        return self.every_seconds > 0 and time.monotonic() - self._last_time >= self.every_seconds

    def hand_over(self, state: StepState) -> None:
        self._last_progress = state.progress
        self._last_time = time.monotonic()
        self.save(state)
        if self.preempt is not None and self.preempt.is_set():
            raise GenerationPreempted(state)

    def restart_clock(self, progress: int) -> None:
        """Count the interval from here (job start, or the resumed checkpoint)."""
        self._last_progress = progress
        self._last_time = time.monotonic()


def state_key(fingerprint: str, parts: dict[str, Any]) -> str:
    """Validity key of a job's checkpoints: model fingerprint, job shape and sampling, and the
    versions of the code that replays them (ltxserve, diffusers, torch, this format)."""
    import diffusers
    import torch

    from ltxserve import __version__

    doc = {
        "format": FORMAT,
        "ltxserve": __version__,
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "model": fingerprint,
        **parts,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def model_fingerprint(location: str | None, pipe: Any) -> str:
    """Which weights these are, cheaply: the model's location and component configs, plus a
    digest of a sample of the transformer's weights (first and last parameter tensors)."""
    import torch

    h = hashlib.sha256(str(location).encode())
    for name in ("transformer", "vae", "audio_vae", "vocoder", "connectors"):
        component = getattr(pipe, name, None)
        config = getattr(component, "config", None)
        if config is not None:
            h.update(json.dumps(dict(config), sort_keys=True, default=str).encode())
    params = list(pipe.transformer.parameters())
    for p in (params[0], params[-1]) if params else ():
        sample = p.detach().reshape(-1)[:4096].to("cpu", torch.float32)
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


def generator_states(generators: list[Any]) -> list[torch.Tensor]:
    return [g.get_state().clone() for g in generators]


def restore_generators(generators: list[Any], states: list[torch.Tensor]) -> None:
    if len(states) != len(generators):
        raise ValueError("checkpoint holds another number of generators")
    for g, s in zip(generators, states, strict=True):
        g.set_state(s)


def cpu_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


class _ExactSchedule:
    """Mixin over the pipeline's scheduler class: ``set_timesteps`` installs a saved schedule."""

    _exact: tuple[torch.Tensor, torch.Tensor]

    def set_timesteps(  # same parameters as FlowMatchEulerDiscreteScheduler (diffusers checks for "sigmas")
        self,
        num_inference_steps: int | None = None,
        device: Any = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        super().set_timesteps(  # type: ignore[misc]
            num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu, timesteps=timesteps
        )
        sigmas_t, timesteps_t = self._exact
        self.sigmas = sigmas_t.to(device)
        self.timesteps = timesteps_t.to(device)


_exact_classes: dict[type, type] = {}


@contextmanager
def resumed_call(pipe: Any, state: StepState) -> Iterator[dict[str, Any]]:
    """Set ``pipe`` up to continue ``state`` (a stage not finished); yields the call kwargs to
    override (``num_inference_steps``, ``sigmas``). Restores the pipe afterwards."""
    device = pipe._execution_device
    video = state.video.to(device)
    audio = state.audio.to(device)
    original_scheduler = pipe.scheduler
    base = type(original_scheduler)
    cls = _exact_classes.get(base)
    if cls is None:
        cls = type(f"Resumed{base.__name__}", (_ExactSchedule, base), {})
        _exact_classes[base] = cls
    scheduler = copy.deepcopy(original_scheduler)
    scheduler.__class__ = cls
    scheduler._exact = (state.sigmas[state.step :].clone(), state.timesteps[state.step :].clone())
    prepare_video = pipe.prepare_latents
    takes_image = "image" in inspect.signature(prepare_video).parameters

    def prepare_latents(*args: Any, **kwargs: Any) -> Any:
        if not takes_image:
            return video
        # image-to-video: the pipeline's own packed-latents path builds the frame-0 mask, no draws
        bound = inspect.signature(prepare_video).bind(*args, **kwargs)
        bound.arguments["latents"] = video
        bound.arguments["noise_scale"] = 0.0
        return prepare_video(*bound.args, **bound.kwargs)

    def prepare_audio_latents(*_args: Any, **_kwargs: Any) -> Any:
        return audio

    pipe.scheduler = scheduler
    pipe.prepare_latents = prepare_latents
    pipe.prepare_audio_latents = prepare_audio_latents
    remaining = [float(s) for s in state.sigmas[state.step : -1]]
    try:
        yield {"num_inference_steps": len(remaining), "sigmas": remaining}
    finally:
        del pipe.prepare_latents
        del pipe.prepare_audio_latents
        pipe.scheduler = original_scheduler


@contextmanager
def audio_in_callback(pipe: Any) -> Iterator[list[str]]:
    """Let ``callback_on_step_end`` see ``audio_latents`` too (diffusers lists only ``latents``
    among the LTX-2 tensors it hands out); yields the tensor names to request."""
    names = [*type(pipe)._callback_tensor_inputs, "audio_latents"]
    pipe._callback_tensor_inputs = names
    try:
        yield ["latents", "audio_latents"]
    finally:
        del pipe._callback_tensor_inputs
