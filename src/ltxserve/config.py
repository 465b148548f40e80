"""The one settings class of ltxserve.

Every knob lives here, read from ``LTXSERVE_*`` environment variables (or a ``.env`` file).
Nothing else in the code base reads the environment. Defaults run the embedded mode: SQLite,
local disk, an in-process worker and the tiny random-weight model.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """ltxserve settings; the README's settings table is generated from these descriptions."""

    model_config = SettingsConfigDict(env_prefix="LTXSERVE_", env_file=".env", extra="ignore")

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
        description="LTX-2 diffusers directory or hub id. Unset: the tiny random-weight model "
        "(built under data_dir on first run; it outputs noise).",
    )
    model_ids: list[str] = Field(
        default=["lightricks:ltx@2"],
        description="Model ids clients may send in `model`; all map to the loaded checkpoint.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to run the model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    cpu_offload: Literal["none", "model", "sequential"] = Field(
        default="none", description="diffusers CPU offload mode for GPUs with too little memory."
    )
    vae_tiling: Literal["auto", "on", "off"] = Field(
        default="auto", description="Tiled VAE decode; auto = only when the untiled decode would not fit."
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
    enhance_seed: int = Field(
        default=10, description="Seed of prompt enhancement (diffusers' default): same prompt, same enhancement."
    )
    text_cache_size: int = Field(
        default=64, description="Prompts whose text-encoder outputs (and enhancements) are kept; 0 disables."
    )
    batch_results: bool = Field(
        default=True, description="Denoise numberResults > 1 in one batched pipeline call when memory allows."
    )

    # --- service -----------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Bind address of `ltxserve serve`.")
    port: int = Field(default=8000, description="Port of `ltxserve serve`.")
    public_base_url: str | None = Field(
        default=None, description="Absolute base for videoURL/imageURL. Unset: http://{host}:{port}."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL. Unset: sqlite+aiosqlite:///{data_dir}/ltxserve.db."
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
    max_image_bytes: int = Field(default=10 * 1024 * 1024, description="Largest input image (encoded bytes).")
    max_image_pixels: int = Field(default=40_000_000, description="Largest input image (decoded pixels).")
    upload_ttl_s: int = Field(default=86_400, description="Lifetime of imageUpload files.")

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests build their own ``Settings(...)`` instead of using this."""
    return Settings()


def settings_table() -> str:
    """The README's settings table, generated from the field descriptions (one place per fact)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `LTXSERVE_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def update_readme(path: Path) -> bool:
    """Rewrite the table between the README's settings markers; True when it changed."""
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    text = path.read_text()
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    new = f"{head}{start}\n{settings_table()}\n{end}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m ltxserve.config README.md
    import sys

    update_readme(Path(sys.argv[1]))
