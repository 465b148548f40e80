"""Structured logging for every process of ltxserve.

One call (``configure``) at process start; everywhere else ``get_logger(__name__)`` and
``log.bind(task_uuid=...)`` so each line says which task it belongs to.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

#: Loggers that speak at ``level``; every other library (alembic, diffusers, procrastinate, ...) is
#: held at WARNING unless ``verbose``, so a command's answer is not buried under their INFO lines.
OWN_LOGGERS = ("ltxserve", "uvicorn")


def configure(
    level: str = "INFO", fmt: Literal["console", "json"] = "console", verbose: bool = False
) -> None:
    """Route structlog and the standard library (uvicorn, diffusers) through one renderer."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    own = logging.getLevelName(level.upper())
    root.setLevel(own if verbose else max(own, logging.WARNING))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)
    # Third-party chatter that would drown the task logs even with --verbose.
    for noisy in ("httpx", "httpcore", "urllib3", "PIL", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else own)


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control and undecodable characters dropped, cut to ``limit``: the tiny model's
    "enhanced prompt" is random token bytes, which would otherwise corrupt a terminal or a log line."""
    kept = "".join(ch for ch in text if ch.isprintable() and ch != "\ufffd")
    return kept if len(kept) <= limit else kept[: limit - 1] + "…"


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]
