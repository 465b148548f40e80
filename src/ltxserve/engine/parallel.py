"""One job across several ranks (GPUs, or CPU processes with gloo): context and guidance parallelism.

Every rank loads the whole pipeline and runs the same engine code on the same job; inside each
transformer pass the work is split:

* **context parallelism** (diffusers' own: ``ContextParallelConfig`` + ``enable_parallelism``): the
  video sequence and the text are split over ``ulysses x ring`` ranks; Ulysses swaps sequence for
  heads with all-to-all around each attention, ring passes key/value blocks around. The audio
  stream (about 126 tokens for 5 s) stays whole on every rank: attention over keys repeated once
  per rank equals attention over the keys themselves, so audio needs no split.
* **guidance parallelism** (ours; diffusers has none yet): the conditional and unconditional rows
  of a classifier-free-guidance batch run on different rank groups and are gathered after the
  pass. A pass whose batch does not divide (CFG off, the refine stage) runs whole on each group.

Rank 0 (the leader) alone talks to the queue and the store: it plans the job (the capacity check
counts the split activations), encodes (and enhances) the prompt once and broadcasts the job and
the text embeddings, so every rank sees the same inputs bit for bit. The others (followers) run
the same ``_generate`` without progress and skip the VAE decode, which diffusers cannot split for
LTX-2: rank 0 decodes. Before each pipeline call the leader says go (or stop, when it gave up on
the job), and the cancel flag is the leader's, broadcast at every step, so all ranks stop at the
same step.

Gaps in diffusers 0.42.1, each closed as small as it can be:

1. ``LTX2VideoTransformer3DModel._cp_plan`` splits the RoPE tables as 3-D ``(B, T, D)``, but
   LTX-2.0's ``rope_type="split"`` makes them 4-D ``(B, H, T, D/2)``: diffusers then skips the split
   with a warning and the pass fails on a shape mismatch. It also leaves the audio-video cross
   attention's video RoPE (``cross_attn_rope``) and the per-token ``timestep`` of image-to-video
   whole. ``cp_plan()`` below is diffusers' plan with those three fixed; it is passed to
   ``enable_parallelism(cp_plan=...)``.
2. ``enable_parallelism`` picks ``rank % torch.accelerator.device_count()`` as the device, a
   division by zero on a CPU-only build; on CPU the count is reported as 1 for that call (the
   device it computes is recorded and not used).
3. Its Ulysses attention gathers a text mask along the keys but keeps the mask's head axis whole
   (LTX-2's processor expands the mask per head), and its ring attention applies each rank's own
   mask to every key block. LTX-2's text connectors replace padding with learnable registers, so
   the transformer's text mask masks nothing and is dropped (exact); a model whose mask does mask
   (the default tiny model has no registers) is refused under context parallelism with a clear
   error. Guidance parallelism alone needs no mask handling.

Sequence lengths that do not divide by the context degree use diffusers' "anything" variants
(uneven all-to-all / ring), switched per pass; they gather unequal shards, which NCCL does and
gloo does not, so on gloo such a size is refused with that reason.

Collectives by backend: Ulysses (all-to-all), guidance (all-gather) and the job broadcasts run on
gloo, so the CPU tests cover them; ring attention's collective (all-gather) runs on gloo too, but
ring needs an attention kernel that returns its log-sum-exp, which diffusers offers on CUDA only
(``_native_flash``, flash, cuDNN): ring is GPU-only and refused on CPU with that reason. NCCL is
what GPUs use.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ltxserve.config import Settings
from ltxserve.engine.engine import Engine, GenerationCancelled, RunPlan
from ltxserve.engine.types import (
    GenerationJob,
    GenerationResult,
    ModelSource,
    ProgressCallback,
    ResultSink,
    StageTimings,
)
from ltxserve.logs import get_logger

if TYPE_CHECKING:
    import numpy as np

    from ltxserve.engine.resume import Checkpointing

log = get_logger(__name__)

#: Environment variables of torch's launchers (torchrun sets the same), read once per process.
RANK_ENV, WORLD_ENV, LOCAL_RANK_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK"


@dataclass(frozen=True)
class Layout:
    """How ``world`` ranks share one transformer pass: ``guidance`` groups (1 or 2) of
    ``ulysses x ring`` context-parallel ranks each."""

    world: int
    guidance: int
    ulysses: int
    ring: int

    @property
    def context(self) -> int:
        return self.ulysses * self.ring

    def __post_init__(self) -> None:
        if self.guidance * self.context != self.world:
            raise ValueError(
                f"{self.world} ranks cannot be split into {self.guidance} guidance group(s) of "
                f"{self.ulysses} (Ulysses) x {self.ring} (ring) ranks"
            )


def choose_layout(settings: Settings, world: int, guides: bool) -> Layout:
    """Degrees from the settings; defaults: guidance-parallel in pairs when the preset guides (dev)
    and the rank count is even, then Ulysses over the rest (all-to-all is the fastest over NVLink;
    ring only where set, e.g. across machines)."""
    mode = settings.guidance_parallel
    guidance = 2 if (mode == "on" or (mode == "auto" and guides)) and world % 2 == 0 else 1
    if mode == "on" and guidance == 1:
        raise ValueError(f"guidance_parallel=on needs an even number of ranks, not {world}")
    ring = settings.ring_degree
    per_group = world // guidance
    if per_group % ring:
        raise ValueError(f"ring_degree {ring} does not divide the {per_group} ranks of a guidance group")
    return Layout(world, guidance, per_group // ring, ring)


def cp_plan(transformer: Any) -> dict[str, Any]:
    """diffusers' LTX-2 context-parallel plan with the RoPE tables split on their token axis (4-D
    for ``rope_type="split"``), the video cross-attention RoPE split too, and a per-token
    ``timestep`` (image-to-video) split with the video tokens; a ``(B,)`` timestep is left whole."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    if transformer.config.rope_type == "split":
        rope = ContextParallelInput(split_dim=2, expected_dims=4, split_output=True)
    else:
        rope = ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)
    return {
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_attention_mask": ContextParallelInput(split_dim=1, expected_dims=2),
            # per-token (B, T) under image-to-video; a (B,) timestep is left whole (diffusers warns once)
            "timestep": ContextParallelInput(split_dim=1, expected_dims=2),
        },
        "rope": {0: rope, 1: rope},
        "cross_attn_rope": {0: rope, 1: rope},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


# --------------------------------------------------------------------------- process group


@dataclass
class Ranks:
    """This process's place in the job group, and the groups its collectives use."""

    rank: int
    world: int
    layout: Layout
    device: Any
    guidance_group: Any = None  # ranks holding the same sequence shard in the other guidance half

    @property
    def leader(self) -> bool:
        return self.rank == 0


def world_from_env() -> tuple[int, int]:
    """(rank, world) from the launcher's environment; (0, 1) when not launched as ranks."""
    return int(os.environ.get(RANK_ENV, "0")), int(os.environ.get(WORLD_ENV, "1"))


def init_process_group(settings: Settings) -> tuple[int, int, Any]:
    """Join the job's process group (``MASTER_ADDR``/``MASTER_PORT`` from the launcher)."""
    import torch
    import torch.distributed as dist

    from ltxserve.engine.loader import select_device

    rank, world = world_from_env()
    device, _ = select_device(settings)
    if device.type == "cuda":
        local = int(os.environ.get(LOCAL_RANK_ENV, str(rank)))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    backend = settings.dist_backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=settings.dist_timeout_s),
            device_id=device if backend == "nccl" else None,
        )
    log.info("joined the job's process group", rank=rank, world=world, backend=backend, device=str(device))
    return rank, world, device


def enable(transformer: Any, layout: Layout, rank: int, device: Any) -> Any:
    """Apply the layout to the transformer: diffusers' context parallelism inside each guidance
    group, and the guidance split around it. Returns the guidance group (or None)."""
    import torch.distributed as dist
    from diffusers import ContextParallelConfig
    from torch.distributed.device_mesh import init_device_mesh

    model = getattr(transformer, "_orig_mod", transformer)
    mesh = init_device_mesh(
        device.type,
        (layout.guidance, layout.ring, layout.ulysses),
        mesh_dim_names=("guidance", "ring", "ulysses"),
    )
    if layout.context > 1:
        if layout.ring > 1 and device.type == "cpu":
            raise ValueError(
                "ring attention needs an attention kernel that returns its log-sum-exp; diffusers 0.42.1 "
                "has none for CPU (its _native_flash calls the CUDA-only flash op): use Ulysses on CPU"
            )
        if layout.ring > 1 and getattr(model, "_ltxserve_attention_backend", None) is None:
            # ring merges partial results by their log-sum-exp, which SDPA's public call does not
            # return; torch's flash kernel does (CUDA, and CPU in fp32 too)
            from ltxserve.engine.accel import set_attention_backend

            set_attention_backend(model, "_native_flash")
        config = ContextParallelConfig(
            ring_degree=layout.ring, ulysses_degree=layout.ulysses, mesh=mesh["ring", "ulysses"]
        )
        with _accelerator_count_for_cpu(device):
            model.enable_parallelism(config=config, cp_plan=cp_plan(model))
        _register(model, _SequenceHook(config), "ltxserve_sequence")
    group = None
    if layout.guidance > 1:
        group = mesh["guidance"].get_group()
        _register(
            model, _GuidanceSplitHook(group, layout.guidance, dist.get_rank(group)), "ltxserve_guidance"
        )
    log.info(
        "transformer split over ranks",
        rank=rank,
        guidance=layout.guidance,
        ulysses=layout.ulysses,
        ring=layout.ring,
    )
    return group


@contextlib.contextmanager
def _accelerator_count_for_cpu(device: Any) -> Iterator[None]:
    """diffusers gap 2 (module docstring): ``rank % device_count()`` with no accelerator."""
    import torch

    if device.type != "cpu" or torch.accelerator.device_count() > 0:
        yield
        return
    from unittest import mock

    with mock.patch.object(torch.accelerator, "device_count", return_value=1):
        yield


def _register(model: Any, hook: Any, name: str) -> None:
    from diffusers.hooks import HookRegistry

    HookRegistry.check_if_exists_or_initialize(model).register_hook(hook, name)


def _model_hook_base() -> type:
    from diffusers.hooks import ModelHook

    return ModelHook


class _SequenceHook(_model_hook_base()):  # type: ignore[misc]
    """Outermost on the transformer, before diffusers' split: a text mask that masks nothing (LTX-2's
    connectors replace padding with learnable registers, so it never does) is dropped, which is
    exact; a pass whose video or text length does not divide by the context degree uses diffusers'
    uneven ("anything") split, an even one keeps the plain path."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.degree = config.ulysses_degree * config.ring_degree
        import torch.distributed as dist

        self.gloo = dist.get_backend() == "gloo"

    def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        for name in ("encoder_attention_mask", "audio_encoder_attention_mask"):
            mask = kwargs.get(name)
            if mask is None:
                continue
            if mask.ndim != 2 or not bool((mask > 0.5).all()):
                # diffusers gap 3 (module docstring): its Ulysses keeps the mask's per-head axis
                # whole, and ring applies a rank's own mask to every key block.
                raise ValueError(
                    "context parallelism needs a text mask that masks nothing (text connectors with "
                    "learnable registers, as LTX-2 has); this model pads its text"
                )
            kwargs[name] = None
        video = kwargs["hidden_states"].shape[1]
        text = kwargs["encoder_hidden_states"].shape[1]
        uneven = bool(video % self.degree or text % self.degree)
        if uneven and self.gloo:
            raise ValueError(
                f"{video} video and {text} text tokens do not split evenly over {self.degree} ranks; the "
                "uneven split gathers unequal shards, which gloo cannot (NCCL can): use a size whose "
                "latent frames x height/32 x width/32 divides by the rank count"
            )
        if self.config.ring_degree > 1:
            self.config.ring_anything = uneven
        else:
            self.config.ulysses_anything = uneven
        return args, kwargs


class _GuidanceSplitHook(_model_hook_base()):  # type: ignore[misc]
    """Each guidance group runs its share of the batch rows (unconditional | conditional under CFG)
    and the outputs are gathered; a batch that does not divide runs whole on every group."""

    def __init__(self, group: Any, degree: int, index: int) -> None:
        super().__init__()
        self.group, self.degree, self.index = group, degree, index
        self.split = False

    def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        import torch

        if args:
            raise TypeError("the guidance split expects keyword arguments (as the LTX-2 pipelines pass them)")
        batch = kwargs["hidden_states"].shape[0]
        self.split = batch % self.degree == 0 and batch >= self.degree
        if not self.split:
            return args, kwargs
        rows = batch // self.degree
        lo = self.index * rows
        out = {
            k: v[lo : lo + rows] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch else v
            for k, v in kwargs.items()
        }
        return args, out

    def post_forward(self, module: Any, output: Any) -> Any:
        if not self.split:
            return output
        import torch.distributed as dist

        def gather(t: Any) -> Any:
            import torch

            parts = [torch.empty_like(t) for _ in range(self.degree)]
            dist.all_gather(parts, t.contiguous(), group=self.group)
            return torch.cat(parts, dim=0)

        if isinstance(output, tuple):
            return tuple(gather(t) for t in output)
        for key in output:  # AudioVisualModelOutput (return_dict=True)
            output[key] = gather(output[key])
        return output


# --------------------------------------------------------------------------- leader <-> followers


def _broadcast(obj: Any = None) -> Any:
    """The leader's object, on every rank (pickled; tensors travel on the CPU)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _LeaderCancel(threading.Event):
    """The engine checks ``cancel.is_set()`` once per step on every rank: here the check is a
    broadcast of the leader's flag, so all ranks stop at the same step."""

    def __init__(self, local: threading.Event | None, leader: bool) -> None:
        super().__init__()
        self.local = local
        self.leader = leader
        self.forced = False  # the leader gave up on the job (an error, or its consumer went away)

    def is_set(self) -> bool:
        mine = self.forced or (self.local is not None and self.local.is_set()) if self.leader else False
        return bool(_broadcast(mine))


class ParallelEngine(Engine):
    """``Engine`` on one rank of a multi-rank job (see the module docstring)."""

    ranks: Ranks

    def __init__(
        self, settings: Settings, t2v: Any, i2v: Any, source: ModelSource, upsampler: Any = None
    ) -> None:
        super().__init__(settings, t2v, i2v, source, upsampler)
        rank, world, device = _current
        layout = choose_layout(settings, world, guides=not self.preset.distilled)
        group = enable(t2v.transformer, layout, rank, device)
        self.ranks = Ranks(rank, world, layout, device, group)
        self.split = (layout.guidance, layout.context)
        self.decodes = self.ranks.leader
        if not self.ranks.leader:
            # Followers never encode: the leader broadcasts the embeddings (Gemma stays on rank 0).
            t2v.text_encoder = None
            i2v.text_encoder = None

    @classmethod
    def load(cls, settings: Settings) -> Engine:
        global _current
        import torch.distributed as dist

        from ltxserve.engine.loader import resolve_model

        _current = init_process_group(settings)
        if _current[0] == 0:
            resolve_model(settings)  # builds the tiny model once, before the others look for it
        dist.barrier()
        return super().load(settings)

    # --- the leader's side -------------------------------------------------------------------

    def generate_batches(
        self,
        job: GenerationJob,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        checkpoint: Checkpointing | None = None,
        sink: ResultSink | None = None,
    ) -> Generator[list[GenerationResult], None, None]:
        if not self.ranks.leader:
            yield from self._follow_one()
            return
        if not job.seeds:
            raise ValueError("a job needs at least one seed")
        if checkpoint is not None:
            # the followers hold no checkpoint and would not resume with the leader
            log.warning("step checkpoints are not taken in multi-rank jobs", ranks=self.ranks.world)
        self.plan(job)  # a capacity error stops here, before the followers hear of the job
        with self._lock:
            _broadcast(("job", job))
            synced = _LeaderCancel(cancel, leader=True)
            failure: list[BaseException] = []
            run = self._generate(job, _guarded(progress, synced, failure), synced, None, sink)
            try:
                yield from run
            except GenerationCancelled:
                if failure:
                    raise failure[0] from None
                raise
            except BaseException:
                synced.forced = True
                _broadcast(("stop",))  # followers waiting for the next pipeline call give up
                raise

    def close(self) -> None:
        """Tell the followers to exit (leader only)."""
        if self.ranks.leader:
            _broadcast(("shutdown",))

    # --- the followers' side -----------------------------------------------------------------

    def follow(self) -> None:
        """Run the leader's jobs until it shuts down (followers only)."""
        while True:
            try:
                for _ in self._follow_one():
                    pass
            except _Shutdown:
                log.info("leader shut down; follower exits", rank=self.ranks.rank)
                return

    def _follow_one(self) -> Generator[list[GenerationResult], None, None]:
        while True:
            msg = _broadcast()
            if msg[0] == "shutdown":
                raise _Shutdown()
            if msg[0] == "job":
                break  # a "stop" from a job this rank already finished: nothing to stop
        job: GenerationJob = msg[1]
        with self._lock:
            try:
                yield from self._generate(job, None, _LeaderCancel(None, leader=False))
            except GenerationCancelled:
                log.info("job stopped by the leader", rank=self.ranks.rank)
            except Exception:
                # Every rank runs the same code on the same inputs, so the leader met the same error
                # and reports it with the task; this rank waits for the next job.
                log.exception("job failed on a follower rank", rank=self.ranks.rank)

    # --- hooks into Engine -------------------------------------------------------------------

    def enhance(self, job: GenerationJob) -> str:
        return str(_broadcast(super().enhance(job) if self.ranks.leader else None))

    def encode(self, prompt: str, negative: str, cfg: bool) -> dict[str, Any]:
        embeds = super().encode(prompt, negative, cfg) if self.ranks.leader else None
        cpu = None if embeds is None else {k: _to(v, "cpu") for k, v in embeds.items()}
        got = _broadcast(cpu)
        return {k: _to(v, self.device) for k, v in got.items()}

    def _call(
        self,
        pipe: Any,
        job: GenerationJob,
        run: RunPlan,
        seeds: list[int],
        embeds: dict[str, Any],
        on_step: Any,
        cancel: threading.Event | None,
        ck: Any = None,
        sink: ResultSink | None = None,
        first_index: int = 0,
    ) -> tuple[np.ndarray, list[np.ndarray] | None, StageTimings]:
        go = _broadcast(("go",) if self.ranks.leader else None)
        if go[0] != "go":
            raise GenerationCancelled()
        return super()._call(pipe, job, run, seeds, embeds, on_step, cancel, None, sink, first_index)


class _Shutdown(Exception):
    pass


#: (rank, world, device) of this process, set by ``ParallelEngine.load`` before the engine is built.
_current: tuple[int, int, Any] = (0, 1, None)


def _to(value: Any, device: Any) -> Any:
    return value.to(device) if hasattr(value, "to") else value


def _guarded(
    progress: ProgressCallback | None, synced: _LeaderCancel, failure: list[BaseException]
) -> ProgressCallback | None:
    """A progress callback that fails turns into a synchronized stop (then re-raised): leaving the
    step loop on rank 0 alone would leave the others waiting in a collective."""
    if progress is None:
        return None

    def call(step: int, total: int) -> None:
        if failure:
            return
        try:
            progress(step, total)
        except Exception as exc:  # re-raised by generate_batches once every rank has stopped
            failure.append(exc)
            synced.forced = True

    return call


# --------------------------------------------------------------------------- launching


def load_engine(settings: Settings) -> Engine:
    """The engine for this process: a ``ParallelEngine`` when launched as one of several ranks."""
    _rank, world = world_from_env()
    if world > 1:
        return ParallelEngine.load(settings)
    return Engine.load(settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_followers(ranks: int, argv: list[str]) -> list[subprocess.Popen[bytes]]:
    """Make this process rank 0 of ``ranks`` and start ranks 1..n-1 as ``argv`` (the same command)
    with torch's launcher variables; torchrun-started ranks skip this."""
    env = dict(os.environ)
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", str(free_port()))
    env[WORLD_ENV] = str(ranks)
    os.environ.update({k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT", WORLD_ENV)})
    os.environ[RANK_ENV] = os.environ[LOCAL_RANK_ENV] = "0"
    children = []
    for r in range(1, ranks):
        child_env = {**env, RANK_ENV: str(r), LOCAL_RANK_ENV: str(r)}
        # their own session: a Ctrl-C reaches rank 0, which drains and then shuts them down
        children.append(subprocess.Popen(argv, env=child_env, start_new_session=True))
    log.info("follower ranks started", ranks=ranks, pids=[c.pid for c in children])
    return children


def stop_followers(children: list[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> int:
    """Wait for followers told to shut down; terminate any still running. Returns the worst code."""
    deadline = time.monotonic() + timeout_s
    worst = 0
    for child in children:
        try:
            worst = max(worst, abs(child.wait(max(0.1, deadline - time.monotonic()))))
        except subprocess.TimeoutExpired:
            log.error("follower rank did not exit; terminating it", pid=child.pid)
            child.terminate()
            worst = max(worst, abs(child.wait()))
    return worst


def run_follower(settings: Settings) -> None:
    """``ltxserve worker`` on a rank > 0: load, then run the leader's jobs until it shuts down."""
    engine = ParallelEngine.load(settings)
    assert isinstance(engine, ParallelEngine)
    engine.follow()
    import torch.distributed as dist

    dist.destroy_process_group()
