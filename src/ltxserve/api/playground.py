"""The browser playground: static files served by the app (filled in by the playground work)."""

from __future__ import annotations

from fastapi import FastAPI


def mount_playground(app: FastAPI) -> None:
    """Add the playground routes (``/`` and its assets) to ``app``."""
    return None
