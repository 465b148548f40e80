"""The playground's routes and files, without a browser: headers, caching, and the form's
parameters checked against the contract in ``ltxserve.protocol.models``."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ltxserve.api import playground
from ltxserve.api.playground import STATIC_DIR, content_security_policy, load_assets
from ltxserve.protocol.models import LTX2_MODEL_ID, VideoInferenceTask


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.state.runtime = SimpleNamespace(service=SimpleNamespace(base_url="http://127.0.0.1:8000"))
    app.include_router(playground.router)
    return TestClient(app, base_url="http://localhost:8000")


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_index_headers_and_csp(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = dict(part.split(" ", 1) for part in response.headers["content-security-policy"].split("; "))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["img-src"] == "'self' data: blob:"
    assert csp["connect-src"] == "'self' ws://localhost:8000 wss://localhost:8000"
    # videoURL is built from the public base URL, which may name another host than the page's.
    assert csp["media-src"] == "'self' http://127.0.0.1:8000"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["form-action"] == "'none'"
    assert "{{" not in response.text


def test_csp_ignores_a_malformed_host() -> None:
    policy = content_security_policy("evil.example; script-src *")
    assert "evil" not in policy
    assert "connect-src 'self';" in policy


def test_etag_revalidation(client: TestClient) -> None:
    first = client.get("/")
    again = client.get("/", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert client.head("/").headers["etag"] == first.headers["etag"]


def test_versioned_assets_are_immutable(client: TestClient) -> None:
    urls = asset_urls(client.get("/").text)
    assert {url.rsplit("/", 1)[-1] for url in urls} >= {"app.css", "main.js", "icon.svg"}
    version = urls[0].split("/")[2]
    for url in urls:
        assert url.split("/")[2] == version
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["etag"]
    main = client.get(f"/static/{version}/js/main.js")
    assert main.headers["content-type"] == "text/javascript; charset=utf-8"
    # Module imports are relative, so they stay inside the versioned folder.
    assert re.findall(r'from "(\./[a-z]+\.js)"', main.text)
    # An old version still answers (a page left open across an upgrade), but is revalidated.
    stale = client.get("/static/0ld0ld0ld0ld/js/main.js")
    assert stale.status_code == 200
    assert stale.headers["cache-control"] == "no-cache"
    assert client.get(f"/static/{version}/nope.js").status_code == 404
    assert client.get(f"/static/{version}/index.html").status_code == 404  # only via /


def test_version_follows_content(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    (tmp_path / "a.js").write_text("1")
    before, _ = load_assets(tmp_path)
    (tmp_path / "a.js").write_text("2")
    after, assets = load_assets(tmp_path)
    assert before != after
    assert set(assets) == {"index.html", "a.js"}


# --------------------------------------------------------------------------- the files themselves


class _Page(HTMLParser):
    """Collects elements (tag, attrs) and the option lists of selects."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.options: dict[str, list[tuple[str, bool]]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.elements.append((tag, values))
        if tag == "select":
            self._select = values.get("id")
            self.options[self._select or ""] = []
        elif tag == "option" and self._select is not None:
            self.options[self._select].append((values.get("value") or "", "selected" in values))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def parse_index() -> _Page:
    page = _Page()
    page.feed((STATIC_DIR / "index.html").read_text())
    return page


def test_no_inline_script_style_or_remote_resources() -> None:
    page = parse_index()
    for tag, attrs in page.elements:
        assert tag != "style", "inline <style> breaks the CSP"
        assert "style" not in attrs, f"inline style attribute on <{tag}>"
        assert not [name for name in attrs if name.startswith("on")], f"inline handler on <{tag}>"
        if tag == "script":
            assert attrs.get("src"), "inline <script> breaks the CSP"
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"(https?:)?//", value), (
                f"remote resource {value}: the page must work offline"
            )
    for path in STATIC_DIR.rglob("*.js"):
        text = path.read_text()
        assert "eval(" not in text
        assert not re.search(r"""(import|from)\s*["']https?:""", text), path


def _schema_at(path: str) -> dict[str, Any]:
    root = VideoInferenceTask.model_json_schema(by_alias=True)
    defs = root.get("$defs", {})
    node: dict[str, Any] = root
    for name in path.split("."):
        node = node["properties"][name]
        if "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], "default": node.get("default")}
        if "anyOf" in node:
            (node,) = [
                {**option, "default": node.get("default")}
                for option in node["anyOf"]
                if option.get("type") != "null"
            ]
    return node


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)  # exact up to 2^63-1


def test_form_matches_the_contract() -> None:
    """Every data-param input states the contract's range, step and default."""
    page = parse_index()
    covered = set()
    for tag, attrs in page.elements:
        path = attrs.get("data-param")
        if not path:
            continue
        covered.add(path.split(".")[0])
        schema = _schema_at(path)
        default = schema.get("default")
        if tag == "input" and attrs.get("type") == "number":
            assert _number(attrs.get("min")) == schema.get("minimum"), path
            if path != "ttl":  # its int32 cap is a storage limit, not worth showing
                assert _number(attrs.get("max")) == schema.get("maximum"), path
            step = schema.get("multipleOf", 1 if schema["type"] == "integer" else None)
            assert _number(attrs.get("step")) == step, path
            assert _number(attrs.get("value")) == default, path
        elif tag == "input" and attrs.get("type") == "checkbox":
            assert ("checked" in attrs) == default, path
        elif tag == "select":
            options = page.options[attrs["id"] or ""]
            assert [value for value, _ in options] == schema["enum"], path
            (selected,) = [value for value, chosen in options if chosen]
            assert selected == (default if default is not None else "none"), path
        elif path == "model":
            assert attrs.get("value") == LTX2_MODEL_ID
    # Set by the page itself rather than an input: fixed values and the image reference.
    by_code = {"taskType", "taskUUID", "outputType", "deliveryMethod", "inputs", "frameImages"}
    properties = set(VideoInferenceTask.model_json_schema(by_alias=True)["properties"])
    missing = properties - covered - by_code
    assert not missing, f"contract parameters the playground has no input for: {sorted(missing)}"
