"""``ltxserve`` command line: generate locally, serve the API, manage keys, build the tiny model."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ltxserve.config import Settings, env_name, get_settings
from ltxserve.logs import configure, printable

# No rich tracebacks: they print local variables (settings with secrets) and bury the message.
# main() turns errors into one line; --verbose shows the plain traceback.
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
app.add_typer(keys_app, name="keys")
db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations (alembic).")
app.add_typer(db_app, name="db")

NOISE_NOTE = "made by the tiny random-weight LTX-2: it is noise, not a video of anything"


@dataclass
class _Options:
    verbose: bool = False


OPTIONS = _Options()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ltxserve {version('ltxserve')}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Library logs (alembic, diffusers, ...) and tracebacks.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    OPTIONS.verbose = verbose


def _settings() -> Settings:
    settings = get_settings()
    configure(settings.log_level, settings.log_format, verbose=OPTIONS.verbose)
    return settings


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows (positivePrompt).")],
    image: Annotated[Path | None, typer.Option(help="First-frame image: image-to-video.")] = None,
    negative: Annotated[str | None, typer.Option(help="negativePrompt (ignored at --cfg <= 1).")] = None,
    width: Annotated[int | None, typer.Option(help="Width in pixels (multiple of 64).")] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels (multiple of 64).")] = None,
    duration: Annotated[int | None, typer.Option(help="Seconds (1-20).")] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second (1-120).")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps (1-100).")] = None,
    cfg: Annotated[float | None, typer.Option(help="CFGScale (1-20); <= 1 turns guidance off.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the first result (others: seed+1, ...).")] = None,
    num_results: Annotated[int, typer.Option(help="numberResults (1-4).")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="MP4, WEBM or MOV.")] = "MP4",
    quality: Annotated[int | None, typer.Option(help="outputQuality (20-99).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model id; default: the served preset's first (docs/engine.md, Model presets)."),
    ] = None,
    enhance: Annotated[bool, typer.Option(help="settings.enhancePrompt")] = True,
    audio: Annotated[bool, typer.Option(help="Generate the audio track.")] = True,
    out: Annotated[Path, typer.Option(help="Output directory, or a file path for one result.")] = Path("out"),
) -> None:
    """Run one videoInference locally and write the files (same validation as the API)."""
    import uuid

    from tqdm import tqdm

    from ltxserve.engine import CapacityError, Engine
    from ltxserve.media.encode import VideoFormat, encode_video, x264_preset
    from ltxserve.media.images import ImageDecodeError, decode_image
    from ltxserve.protocol import ValidationContext, VideoInferenceTask, parse_task, to_job

    settings = _settings()
    # 1. the request, exactly as a client would send it, through the API's validation
    raw: dict[str, Any] = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": model or settings.served_model_ids()[0],
        "positivePrompt": prompt,
        "numberResults": num_results,
        "outputFormat": fmt.upper(),
        "settings": {"enhancePrompt": enhance},
        "providerSettings": {"lightricks": {"generateAudio": audio}},
    }
    optional = {
        "negativePrompt": negative,
        "width": width,
        "height": height,
        "duration": duration,
        "fps": fps,
        "steps": steps,
        "CFGScale": cfg,
        "seed": seed,
        "outputQuality": quality,
    }
    raw.update({k: v for k, v in optional.items() if v is not None})
    decoded = None
    if image is not None:
        try:
            data = image.read_bytes()
            decoded = decode_image(
                data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            )
        except (OSError, ImageDecodeError) as exc:
            _fail(f"--image: {exc}")
        raw["inputs"] = {"frameImages": [base64.b64encode(data).decode()]}
    task, errors = parse_task(raw, ValidationContext.from_settings(settings))
    if not isinstance(task, VideoInferenceTask):
        for e in errors:
            typer.secho(f"{e.parameter or 'request'}: {e.message} ({e.code})", fg="red", err=True)
        raise typer.Exit(2)
    job = to_job(task, image=decoded)

    # 2. load once, check capacity, generate with a progress bar
    engine = Engine.load(settings)
    try:
        plan = engine.plan(job)
    except CapacityError as exc:
        _fail(f"{exc.parameter}: {exc}")
    typer.echo(f"recipe: {engine.job_recipe(job, plan)}")
    bar = tqdm(total=job.steps * len(job.seeds), desc="denoising", unit="step")

    def progress(step: int, total: int) -> None:
        bar.total = total
        bar.n = step
        bar.refresh()

    t0 = time.perf_counter()
    results = engine.generate(job, progress=progress)
    bar.close()

    # 3. encode and report
    vf = VideoFormat(task.output_format)
    paths = _output_paths(out, vf.extension, [r.seed for r in results])
    encode_s = 0.0
    for path, r in zip(paths, results, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        enc = encode_video(
            path,
            r.frames,
            r.fps,
            r.audio,
            r.sample_rate,
            vf,
            task.output_quality,
            x264_preset(choice=settings.x264_preset),
        )
        encode_s += enc.seconds
    total = time.perf_counter() - t0
    t = results[0].timings
    typer.echo("")
    for path, r in zip(paths, results, strict=True):
        audio_note = "with audio" if r.audio is not None else "no audio"
        typer.echo(f"{path}  seed={r.seed}  {r.frames.shape[0]} frames @ {r.fps} fps, {audio_note}")
    if job.enhance_prompt:
        from ltxserve.engine.tiny import TINY_GIBBERISH

        note = f"  ({TINY_GIBBERISH})" if engine.source.is_tiny else ""
        typer.echo(f"enhanced prompt: {printable(results[0].prompt)}{note}")
    typer.echo(
        "seconds: "
        f"enhance {t.enhance:.2f}, text encode {t.text_encode:.2f}, denoise {t.denoise:.2f}, "
        f"video decode {t.video_decode:.2f}, audio decode {t.audio_decode:.2f}, "
        f"file encode {encode_s:.2f}, total {total:.2f}"
    )
    if engine.source.is_tiny:
        typer.secho(f"note: {NOISE_NOTE}", fg="yellow")


def _output_paths(out: Path, ext: str, seeds: list[int]) -> list[Path]:
    if out.suffix and len(seeds) == 1:
        return [out]
    if out.suffix:
        return [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(len(seeds))]
    return [out / f"ltx-{seed}{ext}" for seed in seeds]


async def _open_store(settings: Settings) -> Any:
    """The store alone (keys commands), migrated like a starting server would."""
    from ltxserve.db.database import database_url
    from ltxserve.db.repository import Store

    store = Store(database_url(settings))
    try:
        await store.migrate(auto=settings.auto_migrate)
    except BaseException:
        await store.close()
        raise
    return store


def _fail(message: str) -> None:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(2)


@app.command("tiny-model")
def tiny_model(
    path: Annotated[Path, typer.Argument(help="Directory to write (save_pretrained layout).")],
    preset: Annotated[
        str, typer.Option(help="tiny (tests), mid (CPU benchmarks) or tiny-2.3 (LTX-2.3 layout).")
    ] = "tiny",
    upsampler: Annotated[bool, typer.Option(help="Also write a tiny x2 latent upsampler.")] = False,
) -> None:
    """Build a random-weight LTX-2 from the real diffusers classes. It outputs noise."""
    from ltxserve.engine.tiny import save_tiny_model

    _settings()
    save_tiny_model(path, preset, upsampler=upsampler)
    typer.echo(f"wrote {preset} random-weight LTX-2 to {path} (it outputs noise, not video)")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (LTXSERVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (LTXSERVE_PORT).")] = None,
    worker: Annotated[
        bool,
        typer.Option(
            help="Run the in-process worker (embedded mode). --no-worker: an API node only (no model "
            "loaded, no capacity check at submit: `ltxserve worker` processes generate)."
        ),
    ] = True,
) -> None:
    """Serve the Runware-compatible API (and, by default, generate in the same process)."""
    import uvicorn

    from ltxserve import tracing
    from ltxserve.api.app import create_app
    from ltxserve.api.server import server_config
    from ltxserve.runtime import Runtime

    settings = _settings()
    tracing.configure(settings, "embedded" if worker else "api")
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    runtime = Runtime.build(settings, with_worker=worker)
    uvicorn.Server(server_config(create_app(runtime), settings)).run()


@app.command()
def worker(
    gpus: Annotated[
        int | None,
        typer.Option(
            help="Run each job across N ranks (one process per GPU; gloo CPU processes without CUDA). "
            "Default: LTXSERVE_GPUS."
        ),
    ] = None,
) -> None:
    """A GPU worker: load the model once, take tasks from the queue, heartbeat, drain on SIGTERM.

    It serves no API; Prometheus metrics are on LTXSERVE_METRICS_PORT. Run any number of them
    against one PostgreSQL LTXSERVE_DATABASE_URL (and S3 storage) beside `serve --no-worker`.
    With --gpus N this process is rank 0 of one job group and starts ranks 1..N-1 (ranks started
    by torchrun work too): rank 0 serves the queue, the others follow (engine.parallel).
    """
    import signal

    from ltxserve import tracing
    from ltxserve.engine import parallel
    from ltxserve.runtime import Runtime

    settings = _settings()
    rank, world = parallel.world_from_env()
    if rank > 0:
        parallel.run_follower(settings)
        return
    tracing.configure(settings, "worker")
    ranks = gpus if gpus is not None else settings.gpus
    children = []
    if ranks > 1 and world == 1:
        children = parallel.spawn_followers(ranks, [sys.executable, "-m", "ltxserve.cli", "worker"])

    async def run() -> int:
        runtime = Runtime.build(settings, role="worker")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        if settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, addr=settings.host)
        work = runtime.worker_task
        assert work is not None
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        crashed = work.done() and not work.cancelled() and work.exception() is not None
        if crashed:
            typer.secho(f"worker failed: {work.exception()!r}", fg="red", err=True)
        waiter.cancel()
        await runtime.stop()  # drains the task in hand
        if isinstance(runtime.engine, parallel.ParallelEngine):
            runtime.engine.close()  # the followers exit
        return 1 if crashed else 0

    code = asyncio.run(run())
    if children:
        code = max(code, parallel.stop_followers(children))
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database (LTXSERVE_DATABASE_URL, or the embedded SQLite file) to a revision."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from ltxserve.db import migrate
    from ltxserve.db.database import database_url

    settings = _settings()

    async def run() -> tuple[str | None, str | None]:
        engine = create_async_engine(database_url(settings))
        try:
            return await migrate.upgrade(engine, revision)
        finally:
            await engine.dispose()

    before, after = asyncio.run(run())
    typer.echo(f"database at {after} (was {before or 'empty'})")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the code's head revision."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from ltxserve.db import migrate
    from ltxserve.db.database import database_url

    settings = _settings()

    async def run() -> str | None:
        engine = create_async_engine(database_url(settings))
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(migrate.current_revision)
        finally:
            await engine.dispose()

    typer.echo(f"database: {asyncio.run(run()) or 'empty'}  code: {migrate.head_revision()}")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="A label for the key.")]) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    settings = _settings()

    async def run() -> None:
        store = await _open_store(settings)
        try:
            row, key, secret = await store.keys.create(name)
        finally:
            await store.close()
        typer.echo(
            f"API key for {name!r} (id {row.id}); shown once, store it now:\n\n  {key}\n\n"
            "Send it as `Authorization: Bearer <key>` or as a Runware SDK's api_key.\n\n"
            f"Webhook signing secret (Standard Webhooks), also shown once:\n\n  {secret}\n"
        )

    asyncio.run(run())


@keys_app.command("list")
def keys_list() -> None:
    """List keys (prefix, name, state); the keys themselves are not stored."""
    settings = _settings()

    async def run() -> None:
        store = await _open_store(settings)
        try:
            rows = await store.keys.list()
        finally:
            await store.close()
        for row in rows:
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            typer.echo(
                f"{row.prefix}…  {row.id}  {row.name}  created {row.created_at:%Y-%m-%d %H:%M}  {state}"
            )

    asyncio.run(run())


@keys_app.command("revoke")
def keys_revoke(
    ident: Annotated[str, typer.Argument(help="Key id or the prefix shown by `keys list`.")],
) -> None:
    """Revoke a key: requests with it fail with invalidApiKey from then on."""
    settings = _settings()

    async def run() -> bool:
        store = await _open_store(settings)
        try:
            return await store.keys.revoke(ident.rstrip("…"))
        finally:
            await store.close()

    if not asyncio.run(run()):
        _fail(f"no active key matches {ident!r}")
    typer.echo(f"revoked {ident}")


@keys_app.command("rotate-secret")
def keys_rotate_secret(ident: Annotated[str, typer.Argument(help="Key id or prefix.")]) -> None:
    """New webhook signing secret for a key (printed once); the old one stops signing at once."""
    settings = _settings()

    async def run() -> str | None:
        store = await _open_store(settings)
        try:
            return await store.keys.rotate_webhook_secret(ident.rstrip("…"))
        finally:
            await store.close()

    secret = asyncio.run(run())
    if secret is None:
        _fail(f"no active key matches {ident!r}")
    typer.echo(f"new webhook signing secret, shown once:\n\n  {secret}\n")


def error_line(exc: BaseException) -> str:
    """One readable line for an error a user can fix, naming the fix."""
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

    from ltxserve.db.migrate import SchemaOutdated

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        parts = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            name = env_name(field) if field in Settings.model_fields else field
            parts.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        return "invalid setting: " + "; ".join(parts) + " (fix the environment variable or .env)"
    if isinstance(exc, SchemaOutdated):
        return str(exc)
    if isinstance(exc, DBAPIError | ConnectionError):
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return (
            f"database error: {first} (check LTXSERVE_DATABASE_URL and that the database server is running)"
        )
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first} (run with --verbose for the traceback)"


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if OPTIONS.verbose:
            raise
        typer.secho(f"error: {error_line(exc)}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
