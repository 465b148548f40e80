"""The browser playground: ``/`` and its static assets, a client of the public ``/v1`` protocol.

The page (``static/``) is plain HTML, CSS and ES modules with no build step. Everything it does
goes through the same WebSocket API as the SDKs; the routes here only serve files.

Caching: assets live under ``/static/<version>/...`` where ``<version>`` is a digest of every
file in ``static/``. ``/`` is always revalidated (``no-cache`` + ETag) and names the current
version, so assets under the current version are cached for a year as ``immutable``; relative
imports between modules stay inside the versioned folder. A request for an older version gets
the current file with ``no-cache`` (a page left open across an upgrade keeps working).

Security headers: a strict Content-Security-Policy (no inline script or style, no framing, no
form posts, connections only to this origin's HTTP and WebSocket endpoints, media from this
origin and the server's public base URL, where ``videoURL`` points), ``nosniff`` and
``no-referrer``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ltxserve.logs import get_logger

log = get_logger(__name__)

STATIC_DIR: Final = Path(__file__).with_name("static")
INDEX: Final = "index.html"
#: Replaced in ``index.html`` by ``/static/<version>``.
ASSET_BASE_MARKER: Final = "{{ASSET_BASE}}"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"

MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}

# A Host header safe to repeat in the CSP: a name or IP literal and an optional port.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _asset(body: bytes, media_type: str) -> Asset:
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load_assets(root: Path = STATIC_DIR) -> tuple[str, dict[str, Asset]]:
    """The static files under ``root`` by relative path, and their combined version digest."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        media_type = MEDIA_TYPES.get(path.suffix.lower())
        if media_type is None or not path.is_file():
            continue
        assets[path.relative_to(root).as_posix()] = _asset(path.read_bytes(), media_type)
    digest = hashlib.sha256()
    for name, asset in assets.items():
        digest.update(f"{name}\0{asset.etag}\0".encode())
    return digest.hexdigest()[:12], assets


def content_security_policy(host: str | None, extra_origins: tuple[str, ...] = ()) -> str:
    """The page's CSP. ``host`` (the request's Host header, if well-formed) adds its ws/wss
    origins explicitly for browsers where ``'self'`` does not cover WebSockets;
    ``extra_origins`` are where result files are served (the public base URL)."""
    connect = ["'self'"]
    if host and _HOST.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    media = ["'self'", *extra_origins]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src " + " ".join(media),
            "connect-src " + " ".join(connect),
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not _HOST.fullmatch(parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _file_origins(request: Request) -> tuple[str, ...]:
    """Where ``videoURL`` points: the service's public base URL (it may name another host than
    the one the page was loaded from, e.g. 127.0.0.1 vs localhost)."""
    runtime = getattr(request.app.state, "runtime", None)
    service = getattr(runtime, "service", None)
    origin = _origin(getattr(service, "base_url", None))
    return (origin,) if origin else ()


@dataclass(frozen=True)
class Site:
    """The playground's files, loaded once: ``index.html`` (asset base filled in) and assets."""

    version: str
    index: Asset | None
    assets: dict[str, Asset]


@cache
def site() -> Site:
    """Load ``static/`` on first use (the files are package data and do not change at run time)."""
    version, assets = load_assets()
    index_source = assets.pop(INDEX, None)
    if index_source is None:  # pragma: no cover - a wheel built without its package data
        log.warning("playground files missing; / is not served", directory=str(STATIC_DIR))
        return Site(version, None, assets)
    base = f"/static/{version}"
    body = index_source.body.replace(ASSET_BASE_MARKER.encode(), base.encode())
    return Site(version, _asset(body, index_source.media_type), assets)


def _respond(request: Request, asset: Asset, cache_control: str) -> Response:
    csp = content_security_policy(request.headers.get("host"), _file_origins(request))
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": csp,
    }
    if asset.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    return Response(body, media_type=asset.media_type, headers=headers)


router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def playground(request: Request) -> Response:
    """The page itself, always revalidated (it names the current asset version)."""
    index = site().index
    if index is None:  # pragma: no cover - see ``site``
        return Response(status_code=404)
    return _respond(request, index, REVALIDATE)


@router.api_route("/static/{asset_version}/{name:path}", methods=["GET", "HEAD"])
async def static(request: Request, asset_version: str, name: str) -> Response:
    """An asset: immutable under the current version, revalidated under an older one."""
    current = site()
    asset = current.assets.get(name)
    if asset is None:
        return Response(status_code=404, headers={"Cache-Control": REVALIDATE})
    return _respond(request, asset, IMMUTABLE if asset_version == current.version else REVALIDATE)


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compared by their opaque part)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
