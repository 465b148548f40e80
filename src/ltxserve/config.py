"""The one settings class of ltxserve.

Every knob lives here, read from ``LTXSERVE_*`` environment variables (or a ``.env`` file).
Nothing else in the code base reads the environment. Defaults run the embedded mode: SQLite,
local disk, an in-process worker and the tiny random-weight model.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ltxserve.presets import ModelPreset, resolve_preset, served_model_ids

#: Marks a setting that deployments keep in a secret store (the Kubernetes Secret, not the ConfigMap).
SECRET: dict[str, Any] = {"secret": True}

#: x264's speed presets, quickest first, after ``lean``: ltxserve's own, ultrafast with B-frames,
#: macroblock-tree rate control and the deblocking filter back (``Settings.x264_preset``;
#: ``media.encode`` applies them).
X264Preset = Literal["lean", "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]


class Settings(BaseSettings):
    """ltxserve settings; the docs' settings table (docs/settings.md) is generated from these descriptions."""

    model_config = SettingsConfigDict(
        env_prefix="LTXSERVE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # --- paths -------------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Root for the SQLite file, stored outputs, uploads and the tiny model.",
    )

    log_level: str = Field(default="INFO", description="Log level (DEBUG, INFO, WARNING, ...).")
    log_format: Literal["console", "json"] = Field(default="console", description="Log line format.")

    # --- model / engine ----------------------------------------------------------------------
    model_path: str | None = Field(
        default=None,
        description="LTX-2 diffusers directory, hub id, or Lightricks single-file checkpoint "
        "(`ltx-2-19b-dev*.safetensors`, `ltx-2-19b-distilled*.safetensors`; converted once into "
        "data_dir/converted). Unset: the tiny random-weight model (built under data_dir on first run; "
        "it outputs noise).",
    )
    model_preset: Literal[
        "auto", "dev", "distilled", "dev-fp8", "distilled-fp8", "2.3-dev", "2.3-distilled"
    ] = Field(
        default="auto",
        description="Which LTX-2 variant model_path is (sampling defaults, model ids, two-stage); auto = "
        "from its name (`ltx-2.3`, `distilled`, `fp8`), else LTX-2.0 dev. API nodes need the same value "
        "as workers.",
    )
    model_ids: list[str] = Field(
        default=[],
        description="Model ids accepted in `model` besides the preset's own (`lightricks:ltx@2` for dev, "
        "distilled_model_ids for distilled); all map to the loaded checkpoint.",
    )
    distilled_model_ids: list[str] = Field(
        default=["lightricks:ltx@2-distilled"],
        description="Model ids of the distilled preset (accepted when a distilled checkpoint is served).",
    )
    text_encoder_path: str | None = Field(
        default=None,
        description="Gemma-3 text encoder and tokenizer for a single-file checkpoint (which has none): a "
        "diffusers LTX-2 directory or hub id (text_encoder/, tokenizer/ subfolders) or a Gemma-3 "
        "model directory or hub id.",
    )
    single_file_config: str | None = Field(
        default=None,
        description="Diffusers LTX-2 directory or hub id whose component configs describe a single-file "
        "checkpoint. Unset: the LTX-2.0 configs bundled with ltxserve (diffusers' conversion script).",
    )
    latent_upsampler_path: str | None = Field(
        default=None,
        description="x2 spatial latent upsampler for two-stage generation: a diffusers directory or "
        "Lightricks' `ltx-2-spatial-upscaler-x2-*.safetensors`. Unset: the file of the checkpoint's family "
        "next to a Lightricks single-file checkpoint (`ltx-2-spatial-upscaler-x2-1.0.safetensors`, as "
        "Lightricks ships it), else the model's latent_upsampler/ subfolder, if it has one.",
    )
    distilled_lora_path: str | None = Field(
        default=None,
        description="Lightricks' distilled LoRA (`ltx-2-19b-distilled-lora-384.safetensors`, or a "
        "diffusers-format LoRA file) for the dev preset's two-stage refine (Lightricks' "
        "TI2VidTwoStagesPipeline): loaded once, switched on for the refine stage only. Unset: the file of "
        "the checkpoint's family next to a Lightricks single-file checkpoint "
        "(`ltx-2-19b-distilled-lora-384.safetensors`), so dev runs Lightricks' two-stage recipe by "
        "default; without one the dev preset runs in one stage at any size.",
    )
    distilled_lora_scale: float = Field(
        default=1.0,
        description="Strength of the distilled LoRA in the refine stage (Lightricks' default 1.0; their "
        "examples also use 0.6-0.8).",
    )
    two_stage: Literal["auto", "off"] = Field(
        default="auto",
        description="Two-stage generation (half size, x2 latent upsampling, 3-step refine) for jobs above "
        "two_stage_above_pixels, where an upsampler is available and the preset can refine (distilled; dev "
        "with the distilled LoRA). off: single stage, and no LoRA/upsampler looked for.",
    )
    two_stage_above_pixels: int = Field(
        default=768 * 512,
        description="Frames larger than this (width x height) run two-stage (auto); LTX-2's native "
        "single-stage size is 768x512.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to run the model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    cpu_offload: Literal["none", "model", "sequential"] = Field(
        default="none", description="diffusers CPU offload mode for GPUs with too little memory."
    )
    vae_tiling: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Chunked VAE decode (time chunks streamed into uint8 frames, the VAE's spatial tiles "
        "for large frames); auto = only when the whole-clip decode would not fit.",
    )
    decode_chunk_frames: int = Field(
        default=16,
        description="Largest chunk of chunked decode, in latent frames (8 video frames each); halved "
        "until the chunk fits the memory budget.",
    )
    decode_context_frames: int = Field(
        default=4,
        description="Latent frames of context decoded on each side of a chunk and dropped; at the "
        "decoder's receptive field (15 for LTX-2.0) chunked equals whole-clip decode.",
    )
    memory_limit_gb: float | None = Field(
        default=None,
        description="Memory the capacity check may plan for (GiB). Unset: free GPU memory on CUDA, "
        "available RAM on CPU.",
    )
    max_video_tokens: int = Field(
        default=400_000,
        description="Largest transformer video sequence (latent frames x latent pixels) accepted.",
    )
    max_sequence_length: int = Field(
        default=1024, description="Text tokens given to the text encoder (the pipeline pads to this length)."
    )
    enhance_max_new_tokens: int = Field(
        default=512, description="Upper bound on tokens the prompt enhancer may write (LTX-2.0 default 512)."
    )
    fp8_weights: bool = Field(
        default=False,
        description="Store transformer weights as FP8 (layerwise casting). Lossy; ~half the memory.",
    )
    attention_backend: str | None = Field(
        default=None,
        description="diffusers attention-dispatcher backend of the transformer (e.g. flash, _flash_3, "
        "_native_flash, sage); unset: PyTorch SDPA (ring attention picks _native_flash).",
    )
    compile_transformer: bool = Field(
        default=False, description="torch.compile the transformer, warmed up at start. Lossy within rounding."
    )
    step_cache_every: int = Field(
        default=0,
        description="Step cache: every N-th middle step reuses the previous prediction (2 = ~30% fewer "
        "transformer passes). Lossy; 0 = off.",
    )
    worker_overlap: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Encode/check/store a task while the next one is generated; auto = on with CUDA "
        "(on a CPU both stages compete for the same cores).",
    )
    text_encoder_offload: Literal["auto", "on", "off"] = Field(
        default="auto", description="Move the text encoder off the GPU after encoding; auto = GPUs < 48 GiB."
    )
    enhance_seed: int = Field(
        default=10,
        description="Seed of prompt enhancement (diffusers' default): same prompt, same enhancement.",
    )
    text_cache_size: int = Field(
        default=64, description="Prompts whose text-encoder outputs (and enhancements) are kept; 0 disables."
    )
    stream_encode: bool = Field(
        default=True,
        description="Encode each result's file while its frames are decoded (a thread per result; the "
        "file is the same as encoding afterwards). Off: encode once the frames are complete.",
    )
    x264_preset: X264Preset | Literal["auto"] = Field(
        default="auto",
        description="x264 speed preset of MP4/MOV results (the CRF, i.e. the quality setting, is the same "
        "for all): auto = fast on machines with 8 or more cores, lean below, where the encode competes with "
        "the model for the cores. lean is x264 ultrafast with B-frames, macroblock-tree rate control and "
        "deblocking back on: against veryfast at 768x512 on 2 cores it took 0.34x the CPU on noise (1.42x "
        "the bytes), 0.43x on moving gradients (1.10x) and 0.74x on a panned photo (1.06x); ultrafast: "
        "5.3x and 2.9x the bytes on those two (bench/media.py --presets).",
    )
    batch_tasks: int = Field(
        default=1,
        ge=1,
        description="Most queued tasks of one shape (model, size, length, fps, steps, CFGScale; text-to-"
        "video without prompt enhancement) a worker denoises in one batch, each with its own prompt and "
        "seeds; "
        "1 = off. Results equal running alone within float tolerance.",
    )
    batch_wait_s: float = Field(
        default=0.0,
        ge=0.0,
        description="How long a claimed task may wait for more tasks of its shape to batch with (0: only "
        "tasks already queued join).",
    )
    batch_results: bool = Field(
        default=True, description="Denoise numberResults > 1 in one batched pipeline call when memory allows."
    )

    # --- one job across several GPUs (engine.parallel) ----------------------------------------
    gpus: int = Field(
        default=1,
        ge=1,
        description="Ranks one job runs on (`ltxserve worker --gpus N`): one process per GPU, or per CPU "
        "process with gloo. Rank 0 serves the queue; the others follow.",
    )
    guidance_parallel: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Run the conditional and unconditional CFG passes on different halves of the ranks; "
        "auto = on for a guided preset (dev) with an even rank count.",
    )
    ring_degree: int = Field(
        default=1,
        ge=1,
        description="Ring-attention ranks within a guidance group; the rest of the group splits by "
        "Ulysses (all-to-all). Raise it across machines, where all-to-all is slow.",
    )
    dist_backend: Literal["auto", "nccl", "gloo"] = Field(
        default="auto", description="torch.distributed backend; auto = NCCL on CUDA, gloo on CPU."
    )
    dist_timeout_s: float = Field(
        default=600.0, description="How long a rank waits in a collective before it fails the job group."
    )

    # --- service -----------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Bind address of `ltxserve serve`.")
    port: int = Field(default=8000, description="Port of `ltxserve serve`.")
    public_base_url: str | None = Field(
        default=None, description="Absolute base for videoURL/imageURL. Unset: http://{host}:{port}."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: sqlite+aiosqlite:///{data_dir}/ltxserve.db.",
        json_schema_extra=SECRET,
    )
    auth_cache_s: float = Field(
        default=5.0,
        description="How long a verified API key is trusted before it is looked up again; a key revoked "
        "by another process (e.g. `ltxserve keys revoke`) stops working within this time.",
    )
    default_ttl_s: int = Field(default=86_400, description="Lifetime of outputs when a task sets no `ttl`.")
    sweep_interval_s: float = Field(default=60.0, description="How often expired outputs are deleted.")
    price_per_second: float = Field(default=0.03, description="USD per second of video for `cost`.")
    max_body_bytes: int = Field(
        default=20 * 1024 * 1024, description="Largest REST/WebSocket message accepted."
    )
    max_tasks_per_request: int = Field(default=16, description="Largest task array accepted in one message.")
    max_active_tasks_per_key: int = Field(
        default=8, description="Queued + running videoInference tasks one API key may have."
    )
    max_queue_length: int = Field(
        default=100, description="Queued tasks across all keys before new ones are refused."
    )
    max_queue_wait_s: float | None = Field(
        default=None,
        description="Admission by time: refuse (rateLimitExceeded, with the estimate in the error's "
        "estimatedStartSeconds) a task whose estimated start (queue ETA model) is later than this many "
        "seconds. Unset: no bound.",
    )
    max_attempts: int = Field(
        default=3, description="Tries per task before it ends as an error (crash recovery)."
    )
    lease_s: float = Field(
        default=60.0, description="A running task whose worker stops heartbeating this long is retried."
    )
    heartbeat_s: float = Field(default=10.0, description="Worker heartbeat interval.")
    progress_interval_s: float = Field(
        default=0.5, description="Minimum time between progress updates of one task."
    )
    checkpoint_every_steps: int = Field(
        default=10,
        description="Step checkpoints: save a running task's denoising state (to the blob store) every "
        "this many steps, or every checkpoint_every_s, whichever comes first; a task re-claimed after a "
        "crash resumes there with identical output. 0 = no step criterion.",
    )
    checkpoint_every_s: float = Field(
        default=60.0,
        description="Step checkpoints: at most this many seconds of denoising are lost to a crash. "
        "0 = no time criterion (both 0: no checkpoints).",
    )
    sigterm_action: Literal["checkpoint", "drain"] = Field(
        default="checkpoint",
        description="What a worker does on SIGTERM (preemption notice): checkpoint = save the task's "
        "state at the next step and give it back to the queue at once (another worker resumes it); "
        "drain = finish the task in hand first.",
    )
    preempt_grace_s: float = Field(
        default=30.0,
        description="With sigterm_action=checkpoint: how long the worker waits for the checkpoint and the "
        "release before it exits anyway (match the cloud's preemption notice); the task then resumes "
        "from its last periodic checkpoint once its lease runs out.",
    )
    max_image_bytes: int = Field(default=10 * 1024 * 1024, description="Largest input image (encoded bytes).")
    max_image_pixels: int = Field(default=40_000_000, description="Largest input image (decoded pixels).")
    upload_ttl_s: int = Field(default=86_400, description="Lifetime of imageUpload files.")
    upload_per_minute: int = Field(
        default=60,
        description="Images (imageUpload, mediaStorage, inline first frames) one API key may store per "
        "minute; more get rateLimitExceeded.",
    )
    upload_bytes_per_key: int = Field(
        default=1024 * 1024 * 1024,
        description="Bytes one API key's unexpired uploads may hold; an upload over it gets requestTooLarge "
        "(delete with mediaStorage, or wait for upload_ttl_s).",
    )

    # --- abuse limits (credentials first, bytes later) --------------------------------------
    preauth_body_bytes: int = Field(
        default=64 * 1024,
        description="Largest REST body without an Authorization header (an `authentication` task first in "
        "the array is small); larger ones get 413 requestTooLarge before they are read. Send the key in "
        "the header to send up to max_body_bytes.",
    )
    parse_off_loop_bytes: int = Field(
        default=256 * 1024,
        description="Messages larger than this are decoded and validated in a thread, so one large body "
        "does not stall other clients.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        description="Time a client has to send a request's complete headers (from connecting, or from "
        "the first byte of a keep-alive request); then the connection is closed.",
    )
    body_timeout_s: float = Field(
        default=60.0,
        description="Time a client has to send a whole request body once its headers arrived; slower "
        "requests get 408 requestTimeout and are closed.",
    )
    keep_alive_s: int = Field(
        default=5, description="Idle HTTP keep-alive connections are closed after this many seconds."
    )
    ws_auth_timeout_s: float = Field(
        default=10.0,
        description="A WebSocket must authenticate within this time of connecting (pings do not count), "
        "else it is closed with code 1008.",
    )
    ws_preauth_message_bytes: int = Field(
        default=64 * 1024,
        description="Largest WebSocket message before authentication; a larger one closes the socket "
        "(1009) before it is buffered. After authentication: 4 x max_body_bytes (larger than "
        "max_body_bytes gets a requestTooLarge reply).",
    )
    max_connections: int = Field(
        default=1000,
        description="Open connections (HTTP and WebSocket) one `ltxserve serve` process holds; more are "
        "answered 503 and closed.",
    )
    max_connections_per_client: int = Field(
        default=64,
        description="Open connections from one client IP address; more are answered 429 and closed. "
        "Behind a reverse proxy every client has the proxy's address: raise this and limit at the proxy.",
    )
    auth_failures_per_minute: int = Field(
        default=20,
        description="Failed authentications one client IP address may make per minute; after that its "
        "authentication attempts get 429 rateLimitExceeded until the minute has passed.",
    )

    # --- scale-out: queue, migrations, object storage, metrics ------------------------------
    queue_backend: Literal["auto", "table", "procrastinate"] = Field(
        default="auto",
        description="How workers get task ids. auto: procrastinate (PostgreSQL job queue: LISTEN/NOTIFY "
        "wake-up, worker heartbeats, stalled-job retry) on PostgreSQL, the tasks table itself on SQLite.",
    )
    auto_migrate: bool = Field(
        default=True,
        description="Run the database migrations (alembic upgrade head) when a process starts; on "
        "PostgreSQL under an advisory lock, so nodes starting together migrate once. False: refuse to "
        "start on an out-of-date schema (run `ltxserve db upgrade`).",
    )
    db_retry_s: float = Field(
        default=30.0,
        description="How long a worker retries a database write whose connection dropped "
        "(failover, pg_terminate_backend) before giving the attempt up.",
    )
    storage_backend: Literal["auto", "local", "s3"] = Field(
        default="auto",
        description="Where outputs and uploads live. auto: s3 when s3_bucket is set, else local.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, SeaweedFS, R2, ...). Unset: AWS S3 for s3_region.",
    )
    s3_bucket: str | None = Field(default=None, description="Bucket for outputs and uploads.")
    s3_region: str = Field(default="us-east-1", description="Region used for SigV4 signing.")
    s3_access_key_id: str | None = Field(
        default=None,
        description="Access key. Unset: boto3's default credential chain (env, IAM role).",
        json_schema_extra=SECRET,
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret key for s3_access_key_id.", json_schema_extra=SECRET
    )
    s3_path_style: bool = Field(
        default=True,
        description="Path-style addressing (endpoint/bucket/key), as MinIO and SeaweedFS need; "
        "False: virtual-hosted style.",
    )
    s3_prefix: str = Field(default="", description="Prefix put before every object key (e.g. ltxserve/).")
    storage_retry_s: float = Field(
        default=300.0,
        description="How long a write to the object store is retried while it is unreachable before the "
        "task attempt fails (the lease is kept alive meanwhile).",
    )
    metrics_port: int = Field(
        default=9400,
        description="Port of the Prometheus /metrics listener of `ltxserve worker` (bound to host); 0 turns "
        "it off. API nodes serve /metrics on their own port.",
    )

    # --- outbound HTTP (image URLs, webhooks, uploadEndpoint) --------------------------------
    fetch_connect_timeout_s: float = Field(default=5.0, description="Connect timeout for outbound requests.")
    fetch_read_timeout_s: float = Field(default=15.0, description="Read timeout for outbound requests.")
    fetch_max_redirects: int = Field(default=3, description="Redirects followed when fetching an image URL.")
    allow_networks: list[str] = Field(
        default=[],
        description="CIDR ranges outbound requests may reach although private/loopback "
        '(e.g. ["127.0.0.1/32"] for a local receiver). Empty: public addresses only.',
    )

    # --- delivery ----------------------------------------------------------------------------
    webhook_envelope: Literal["flat", "data"] = Field(
        default="flat", description='Webhook body: the result item itself, or {"data": [item]}.'
    )
    delivery_window_s: float = Field(
        default=600.0, description="How long failed webhooks/uploads are retried."
    )
    delivery_timeout_s: float = Field(default=15.0, description="Per-attempt timeout of a webhook or upload.")

    # --- safety ------------------------------------------------------------------------------
    nsfw_threshold: float = Field(default=0.8, description="A checked frame scoring above this is NSFW.")
    nsfw_action: Literal["flag", "fail"] = Field(
        default="flag", description="flag: report NSFWContent; fail: end the result with nsfwContentDetected."
    )

    # --- tracing: OpenTelemetry's own variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_RESOURCE_ATTRIBUTES,
    # OTEL_TRACES_SAMPLER, ... are read by the OpenTelemetry SDK itself) ---------------------
    otel_traces_exporter: Literal["none", "otlp", "console"] = Field(
        default="none",
        validation_alias="OTEL_TRACES_EXPORTER",
        description="OpenTelemetry traces: none (off, the default here), otlp (OTLP over HTTP to "
        "OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or console (JSON on stdout). "
        "One trace per task: API request, queue, worker stages, deliveries.",
    )
    otel_service_name: str = Field(
        default="ltxserve",
        validation_alias="OTEL_SERVICE_NAME",
        description="service.name of the spans this process exports.",
    )

    def preset(self) -> ModelPreset:
        """``model_preset``, or (``auto``) the preset the checkpoint's name implies."""
        return resolve_preset(self.model_preset, self.model_path)

    def served_model_ids(self) -> tuple[str, ...]:
        """Model ids clients may send: the model preset's aliases, then ``model_ids``."""
        return served_model_ids(self.preset(), self.distilled_model_ids, self.model_ids)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests build their own ``Settings(...)`` instead of using this."""
    return Settings()


def settings_table() -> str:
    """The settings table of docs/settings.md, generated from the field descriptions (one place per fact)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{env_name(name)}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def update_settings_page(path: Path) -> bool:
    """Rewrite the table between the page's settings markers; True when it changed."""
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    text = path.read_text()
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    new = f"{head}{start}\n{settings_table()}\n{end}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


def env_name(name: str) -> str:
    """The environment variable of setting ``name``: LTXSERVE_<NAME>, or a standard one (OTEL_*)."""
    alias = Settings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"LTXSERVE_{name.upper()}"


def is_secret(name: str) -> bool:
    """Whether the setting ``name`` belongs in a secret store (see ``SECRET``)."""
    extra = Settings.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get("secret") is True


if __name__ == "__main__":  # python -m ltxserve.config [docs/settings.md]
    import sys

    update_settings_page(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/settings.md"))
