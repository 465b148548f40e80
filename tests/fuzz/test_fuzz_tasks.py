"""Hostile task arrays over REST and an authenticated WebSocket, against a live server.

Hypothesis builds arrays of tasks from known task shapes mutated with hostile values: wrong
types, huge and odd numbers (1e308, 2**200, -0.0), unicode (RTL, zero-width, lone surrogates
sent as ``\\ud800`` escapes, NUL), malformed base64/data URIs, truncated images, decompression
bombs, nested junk, odd field names, and mixtures of valid and invalid tasks. Fixed cases add
what a generator reaches poorly: thousands of nesting levels as raw JSON text, giant payloads
on both sides of ``max_body_bytes``, duplicated JSON keys, undecodable bytes.

Properties: never a 5xx, never a hang (every reply within ``REPLY_TIMEOUT_S``), always a
well-formed Runware envelope whose errors name the parameter they are about; the WebSocket
stays open and answers a ping afterwards; ``/readyz`` is 200 at the end. Accepted
videoInference tasks are cheap (128x128 templates, a 64-token server) and cancelled at once.

Derandomized and bounded for the suite; long runs: see ``tests/fuzz/conftest.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from ltxserve.protocol import LTX2_MODEL_ID, request_json_schema
from tests.api.conftest import LiveServer
from tests.fuzz.conftest import (
    FUZZ_MAX_BODY_BYTES,
    REPLY_TIMEOUT_S,
    accepted_uuids,
    assert_bounded,
    assert_envelope,
    cancel,
    cheap_video,
    check_rest_reply,
    fuzz_examples,
    fuzz_settings_for,
    new_uuid,
    post_raw,
    ready,
    sent_task_uuids,
    to_json_text,
)

EXAMPLES = fuzz_examples(200)
STATS: dict[str, int] = {"rest": 0, "ws": 0, "fixed": 0, "accepted": 0}

# --------------------------------------------------------------------------- hostile images


def _png(size: tuple[int, int] = (48, 32)) -> bytes:
    image = Image.effect_noise(size, 64).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes claiming ``width`` x ``height`` RGB pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{_b64(data)}"


PNG = _png()
TRUNCATED = PNG[: len(PNG) // 2]
BOMB = _png_declaring(50_000, 50_000)

#: Image inputs that must each be refused with an error naming the parameter.
BAD_IMAGES: dict[str, str] = {
    "truncated-png-uri": _uri(TRUNCATED),
    "truncated-png-b64": _b64(TRUNCATED),
    "header-only-png": _uri(PNG[:33]),
    "bomb-50000x50000-uri": _uri(BOMB),
    "bomb-50000x50000-b64": _b64(BOMB),
    "bomb-1x2147483647": _uri(_png_declaring(1, 2**31 - 1)),
    "b64-not-an-image": _b64(b"GIF89a this is not really a gif" * 4),
    "b64-bad-padding": "AAAA=A",
    "b64-too-much-padding": "AAA====",
    "b64-single-char": "A",
    "uri-bad-chars": "data:image/png;base64,!!!!",
    "uri-empty-payload": "data:image/png;base64,",
    "uri-not-base64": "data:image/png,rawbytes",
    "uri-no-comma": "data:image/png;base64",
    "uri-text-html": "data:text/html;base64," + _b64(b"<script>alert(1)</script>"),
    "uri-svg": "data:image/svg+xml;base64," + _b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
    "uri-percent": "data:image/png;base64,%00%ff%zz",
    "unknown-image-uuid": "4d89f0f5-1277-48ee-875d-58e07a4b09d3",
    "url-blocked": "http://127.0.0.1:1/x.png",
    "url-bad-port": "http://example.com:99999/x.png",
    "url-userinfo": "http://user:pw@example.com/x.png",
    "not-an-image-at-all": "%%% not an image %%%",
}
GOOD_IMAGES = [_uri(PNG), _b64(PNG)]

# --------------------------------------------------------------------------- hostile values

HUGE_NUMBERS: list[Any] = [
    1e308,
    -1e308,
    2**200,
    -(2**200),
    -0.0,
    0.0,
    5e-324,
    2**63,
    2**63 - 1,
    2**64,
    -1,
    0,
    1,
    128.0,
    128.5,
    127.99999999999999,
    1e16,
    True,
    False,
]
HOSTILE_TEXT: list[str] = [
    "",
    " ",
    "\t\n\r",
    "\u202eevil\u202c",  # right-to-left override
    "\u200b",  # zero-width space
    "\u200d\u200c\ufeff",  # zero-width joiners, BOM
    "\x00",
    "a\x00b",
    "\ud800",  # lone surrogates: travel as JSON escapes
    "\udfff\ud800",
    "\ud83d\ude00",  # a valid pair (an emoji)
    "e\u0301\u0301\u0301",  # combining marks
    "𝕷𝖙𝖝",
    "\U0010ffff",
    "<script>alert(1)</script>",
    "'; DROP TABLE tasks; --",
    "%s%n%x",
    "../../../../etc/passwd",
    "${jndi:ldap://x}",
    LTX2_MODEL_ID + "\x00",
    LTX2_MODEL_ID + "\u200b",
    LTX2_MODEL_ID.upper(),
    "videoInference\u200b",
    "A" * 20_000,
]
ODD_KEYS: list[str] = [
    "",
    " ",
    "__proto__",
    "constructor",
    "taskType ",
    "\x00",
    "\ud800",
    "\u202e",
    "k" * 300,
]


def _fields() -> list[str]:
    names: set[str] = set()
    for schema in request_json_schema()["$defs"].values():
        for branch in schema.get("anyOf", [schema]):
            names.update(branch.get("properties", {}))
    return sorted(names | {"scheduler", "lora", "referenceImages"})


FIELDS = _fields()

uuids = st.uuids(version=4).map(str)
scalars = (
    st.sampled_from(HUGE_NUMBERS)
    | st.sampled_from(HOSTILE_TEXT)
    | st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from([*GOOD_IMAGES, *BAD_IMAGES.values()])
    | uuids
)
keys = st.sampled_from(FIELDS) | st.sampled_from(ODD_KEYS) | st.text(max_size=6)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


@st.composite
def damaged_pngs(draw: st.DrawFn) -> bytes:
    """The real PNG cut short and/or with bytes overwritten (header, chunk lengths, CRCs, data)."""
    data = bytearray(PNG[: draw(st.integers(0, len(PNG)))])
    for _ in range(draw(st.integers(0, 3)) if data else 0):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


image_values = (
    st.sampled_from([*GOOD_IMAGES, *BAD_IMAGES.values()])
    | damaged_pngs().map(_b64)
    | damaged_pngs().map(_uri)
    | st.binary(max_size=48).map(_b64)
    | json_values
)


@st.composite
def base_tasks(draw: st.DrawFn) -> Any:
    # mostly fresh UUIDs, so that many tasks get past validation into the service
    odd_uuid = st.sampled_from(["4d89f0f5-1277-48ee-875d-58e07a4b09d3", "x", "", "\u200b"]) | json_values
    task_uuid = draw(odd_uuid if draw(st.integers(0, 5)) == 0 else uuids)
    kind = draw(
        st.sampled_from(
            [
                "video",
                "video",
                "video-image",
                "video-image",
                "video-legacy-image",
                "imageUpload",
                "imageUpload",
                "mediaStorage",
                "mediaDelete",
                "getResponse",
                "taskCancel",
                "ping",
                "authentication",
                "unknown",
                "junk",
            ]
        )
    )
    if kind == "junk":
        return draw(json_values)
    if kind.startswith("video"):
        task = cheap_video(task_uuid)
        if kind == "video-image":
            task["inputs"] = {"frameImages": [{"image": draw(image_values), "frame": "first"}]}
        elif kind == "video-legacy-image":
            task["frameImages"] = [{"inputImage": draw(image_values), "frame": draw(json_values)}]
        return task
    if kind == "imageUpload":
        return {"taskType": "imageUpload", "taskUUID": task_uuid, "image": draw(image_values)}
    if kind == "mediaStorage":
        return {
            "taskType": "mediaStorage",
            "taskUUID": task_uuid,
            "operation": "upload",
            "media": draw(image_values),
        }
    if kind == "mediaDelete":
        return {
            "taskType": "mediaStorage",
            "taskUUID": task_uuid,
            "operation": "delete",
            "mediaUUID": draw(uuids),
        }
    if kind in ("getResponse", "taskCancel"):
        return {"taskType": kind, "taskUUID": task_uuid}
    if kind == "ping":
        return {"taskType": "ping", "ping": draw(json_values)}
    if kind == "authentication":
        # never another real key: the WebSocket must stay on the test key
        return {
            "taskType": "authentication",
            "apiKey": draw(st.sampled_from(["ltx_wrong", ""]) | json_values),
        }
    return {"taskType": draw(st.sampled_from(["imageInference", "VIDEOINFERENCE", "", " "]) | json_values)}


@st.composite
def hostile_tasks(draw: st.DrawFn) -> Any:
    task = draw(base_tasks())
    if isinstance(task, dict):
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 4]))):
            field = draw(st.sampled_from(FIELDS) | st.sampled_from(ODD_KEYS))
            if draw(st.booleans()):
                task[field] = draw(json_values)
            else:
                task.pop(field, None)
    return task


task_arrays = (
    st.lists(hostile_tasks(), min_size=1, max_size=6) | st.lists(hostile_tasks(), max_size=0) | json_values
)


# --------------------------------------------------------------------------- transports


@pytest.fixture(scope="module")
def server(fuzz_live: LiveServer) -> Iterator[LiveServer]:
    yield fuzz_live
    ready(fuzz_live)
    print(f"\ntask fuzz cases sent: {STATS}")


def rest_roundtrip(live: LiveServer, content: bytes | str, sent: object = None) -> dict[str, Any]:
    response, _ = post_raw(live, content)
    body = check_rest_reply(response, sent)
    accepted = accepted_uuids(body)
    STATS["accepted"] += len(accepted)
    cancel(live, accepted)
    return body


class WsSession:
    """One authenticated WebSocket; each request is followed by a marker getResponse, so its
    reply is everything up to the marker's (pushes of accepted tasks may come in between)."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.sent: set[str] = set()
        self.ws = self._open()

    def _open(self) -> ClientConnection:
        ws = connect(self.live.ws_url, open_timeout=REPLY_TIMEOUT_S, max_size=None)
        self._authenticate(ws)
        return ws

    def _authenticate(self, ws: ClientConnection) -> None:
        ws.send(json.dumps([{"taskType": "authentication", "apiKey": self.live.key}]))
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:  # pushes for tasks accepted earlier may come first
            reply = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if not reply.get("errors") and reply.get("data", [{}])[0].get("taskType") == "authentication":
                return
            assert_envelope(reply)

    def roundtrip(self, message: str | bytes, sent: object = None) -> list[dict[str, Any]]:
        """Send ``message``; every message until the marker's reply, each checked."""
        if self.ws.state is not State.OPEN:  # a failed test closed it: start the next one afresh
            self.ws = self._open()
        self.sent |= sent_task_uuids(sent) if sent is not None else set()
        marker = new_uuid()
        self.sent.add(marker)
        self.ws.send(message)
        self.ws.send(json.dumps([{"taskType": "getResponse", "taskUUID": marker}]))
        replies: list[dict[str, Any]] = []
        received = 0
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:
            raw = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            assert isinstance(raw, str), "replies are text frames"
            received += len(raw)
            raw.encode("utf-8")  # strict: no lone surrogates on the wire
            body = json.loads(raw)
            errors = body.get("errors", []) if isinstance(body, dict) else []
            if any(e.get("taskUUID") == marker for e in errors if isinstance(e, dict)):
                assert body == {"errors": [errors[0]]}, body
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if errors[0]["code"] == "missingApiKey" and "authentication" in text.lower():
                    # an authentication task with a bad key in the message de-authenticated the
                    # socket (revocation and failed re-authentication reach open sockets)
                    self._authenticate(self.ws)
                else:
                    assert errors[0]["code"] == "taskNotFound", body
                break
            # a reply to ``message``, or a push for a task accepted earlier on this socket
            assert_envelope(body, self.sent if sent is not None else None)
            replies.append(body)
        assert replies, "no reply to the message before the marker's"
        assert_bounded(received, len(message))
        accepted = [u for body in replies for u in accepted_uuids(body)]
        STATS["accepted"] += len(accepted)
        cancel(self.live, accepted)
        return replies

    @staticmethod
    def errors_for(replies: list[dict[str, Any]], task_uuid: str) -> list[dict[str, Any]]:
        return [e for body in replies for e in body.get("errors", []) if e.get("taskUUID") == task_uuid]

    def ping(self) -> None:
        self.ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:  # skip pushes for cancelled tasks
            body = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if body == {"data": [{"taskType": "ping", "pong": True}]}:
                return
            assert_envelope(body)


@pytest.fixture(scope="module")
def ws(server: LiveServer) -> Iterator[WsSession]:
    session = WsSession(server)
    yield session
    session.ping()  # still open and answering after everything the fuzzers sent
    session.ws.close()


# --------------------------------------------------------------------------- generated arrays


@fuzz_settings_for(EXAMPLES)
@given(body=task_arrays)
def test_rest_generated_task_arrays(server: LiveServer, body: Any) -> None:
    STATS["rest"] += 1
    rest_roundtrip(server, to_json_text(body), body)


@fuzz_settings_for(max(1, EXAMPLES * 3 // 4))
@given(body=task_arrays)
def test_websocket_generated_task_arrays(ws: WsSession, body: Any) -> None:
    STATS["ws"] += 1
    ws.roundtrip(to_json_text(body), body)


# --------------------------------------------------------------------------- fixed hostile cases


def _nested(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


def _video_text(**raw_fields: str) -> str:
    """A cheap videoInference as JSON text with some fields given as raw JSON text."""
    task = cheap_video(new_uuid())
    parts = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in task.items() if k not in raw_fields]
    parts += [f"{json.dumps(k)}:{v}" for k, v in raw_fields.items()]
    return "[{" + ",".join(parts) + "}]"


BELOW = FUZZ_MAX_BODY_BYTES * 3 // 4
ABOVE = FUZZ_MAX_BODY_BYTES + 1024 * 1024

#: Raw request bodies (JSON text or bytes), each sent as is over REST and over the WebSocket.
RAW_BODIES: dict[str, str | bytes] = {
    "array-nesting-100000": "[" * 100_000 + "]" * 100_000,
    "object-nesting-50000": _nested(50_000),
    "nesting-900-in-task": _video_text(settings=_nested(900, "true")),
    "nesting-5000-in-frameImages": _video_text(inputs='{"frameImages":' + "[" * 5000 + "]" * 5000 + "}"),
    "nesting-unclosed": "[" * 20_000,
    "prompt-below-limit": _video_text(positivePrompt=json.dumps("x" * BELOW)),
    "prompt-above-limit": _video_text(positivePrompt=json.dumps("x" * ABOVE)),
    "zero-width-prompt-below-limit": _video_text(positivePrompt=json.dumps("\u200b" * (BELOW // 8))),
    "base64-junk-below-limit": to_json_text(
        [{"taskType": "imageUpload", "taskUUID": new_uuid(), "image": "QUFB" * (BELOW // 4)}]
    ),
    "data-uri-below-limit": to_json_text(
        [
            {
                "taskType": "imageUpload",
                "taskUUID": new_uuid(),
                "image": "data:image/png;base64," + "QUFB" * (BELOW // 4),
            }
        ]
    ),
    "giant-key": "[{" + json.dumps("k" * BELOW) + ':1,"taskType":"ping"}]',
    "giant-array-of-nulls": "[" + ",".join(["null"] * (BELOW // 5)) + "]",
    "giant-integer-literal": _video_text(width="1" * 100_000),
    "integer-2**200": _video_text(width=str(2**200)),
    "float-1e308": _video_text(width="1e308", height="1e308"),
    "float-overflow-1e400": _video_text(CFGScale="1e400"),
    "float-negative-zero": _video_text(seed="-0.0", CFGScale="-0.0"),
    "float-denormal": _video_text(CFGScale="5e-324"),
    "float-exponent-width": _video_text(width="1.28e2", height="12.8E1"),  # 128: accepted
    "nan-infinity-tokens": _video_text(CFGScale="NaN", steps="Infinity"),
    "duplicate-keys": _video_text(width='128,"width":"x"'),
    "duplicate-task-type": '[{"taskType":"ping","taskType":"videoInference","taskUUID":"x"}]',
    "duplicate-task-uuid": _video_text(taskUUID=f'"{new_uuid()}","taskUUID":"not-a-uuid"'),
    "surrogate-escapes": _video_text(positivePrompt='"\\ud800\\udc00\\ud800 \\udfff"', model='"\\ud83d"'),
    "nul-escapes": _video_text(positivePrompt='"a\\u0000b"', negativePrompt='"\\u0000"'),
    "surrogate-key": '[{"taskType":"ping","\\ud800":1}]',
    "rtl-zero-width-everywhere": _video_text(
        positivePrompt='"\\u202etxet\\u200b\\ufeff"', taskUUID='"\\u200b' + new_uuid() + '"'
    ),
    "empty-body": b"",
    "whitespace-body": b" \n\t ",
    "bom-body": b"\xef\xbb\xbf" + to_json_text([{"taskType": "ping"}]).encode(),
    "utf16-body": to_json_text([{"taskType": "ping"}]).encode("utf-16"),
    "invalid-utf8-in-string": b'[{"taskType":"ping","x":"\xff\xfe\xc0\x80"}]',
    "lone-surrogate-utf8-bytes": b'[{"taskType":"ping","x":"\xed\xa0\x80"}]',
    "nul-byte-body": b"\x00",
    "null": "null",
    "string": '"videoInference"',
    "number": "1e999",
    "empty-array": "[]",
    "empty-object": "{}",
    "array-of-arrays": "[[],[[]],[1,2]]",
    "trailing-garbage": '[{"taskType":"ping"}] trailing',
    "trailing-comma": '[{"taskType":"ping"},]',
    "comments": '[/* hi */{"taskType":"ping"}]',
    "single-quotes": "[{'taskType':'ping'}]",
    "too-many-tasks": to_json_text([{"taskType": "ping"}] * 500),
}


@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_rest_raw_bodies(server: LiveServer, name: str) -> None:
    STATS["fixed"] += 1
    content = RAW_BODIES[name]
    response, _ = post_raw(server, content)
    body = check_rest_reply(response)
    cancel(server, accepted_uuids(body))
    size = len(content.encode() if isinstance(content, str) else content)
    if size > FUZZ_MAX_BODY_BYTES:
        assert response.status_code == 413
        assert body["errors"][0]["code"] == "requestTooLarge"
    if name == "float-exponent-width":
        assert response.status_code == 200, body  # 1.28e2 is the integer 128
    if name == "duplicate-keys":
        assert [e["parameter"] for e in body["errors"]] == ["width"]  # the last value counts


@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_websocket_raw_messages(server: LiveServer, ws: WsSession, name: str) -> None:
    STATS["fixed"] += 1
    content = RAW_BODIES[name]
    size = len(content.encode() if isinstance(content, str) else content)
    if size <= FUZZ_MAX_BODY_BYTES:
        ws.roundtrip(content)
        return
    # Above the limit the server may answer requestTooLarge or close with 1009 (message too
    # big); either way on a socket of its own, and a new connection works at once.
    own = WsSession(server)
    body: Any = None
    closed_with: int | None = None
    try:
        own.ws.send(content)
        body = json.loads(own.ws.recv(timeout=REPLY_TIMEOUT_S))
    except ConnectionClosed as exc:
        closed_with = exc.rcvd.code if exc.rcvd is not None else -1
    if body is not None:
        assert_envelope(body)
        assert body["errors"][0]["code"] == "requestTooLarge"
        own.ping()
    else:
        assert closed_with == 1009, f"closed with {closed_with}, not 1009 (message too big)"
    own.ws.close()
    WsSession(server).ping()


# --------------------------------------------------------------------------- images


def _image_tasks(image: str) -> list[tuple[dict[str, Any], str]]:
    """Each place an image input goes, with the parameter its error must name (a prefix)."""
    video = cheap_video(new_uuid())
    video["inputs"] = {"frameImages": [{"image": image, "frame": "first"}]}
    legacy = cheap_video(new_uuid())
    legacy["frameImages"] = [{"inputImage": image, "frame": "first"}]
    shorthand = cheap_video(new_uuid())
    shorthand["inputs"] = {"frameImages": [image]}
    return [
        ({"taskType": "imageUpload", "taskUUID": new_uuid(), "image": image}, "image"),
        (
            {"taskType": "mediaStorage", "taskUUID": new_uuid(), "operation": "upload", "media": image},
            "media",
        ),
        (video, "inputs.frameImages[0]"),
        (legacy, "frameImages[0]"),
        (shorthand, "inputs.frameImages[0]"),
    ]


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_images_are_refused_naming_the_parameter(server: LiveServer, ws: WsSession, name: str) -> None:
    for task, parameter in _image_tasks(BAD_IMAGES[name]):
        STATS["fixed"] += 1
        body = rest_roundtrip(server, to_json_text([task]), [task])
        assert "data" not in body, body
        (error,) = body["errors"]
        assert error["code"].startswith("invalid"), error
        assert error["parameter"].startswith(parameter), error
        assert error["taskUUID"] == task["taskUUID"], error
        task["taskUUID"] = new_uuid()
        (error,) = ws.errors_for(ws.roundtrip(to_json_text([task]), [task]), task["taskUUID"])
        assert error["parameter"].startswith(parameter), error


def test_mixed_array_answers_each_task(server: LiveServer, ws: WsSession) -> None:
    """Valid and invalid tasks in one array: the valid ones run, each bad one gets its errors."""
    good = cheap_video(new_uuid())
    wide = cheap_video(new_uuid()) | {"width": 130}
    truncated = {"taskType": "imageUpload", "taskUUID": new_uuid(), "image": BAD_IMAGES["truncated-png-uri"]}
    upload = {"taskType": "imageUpload", "taskUUID": new_uuid(), "image": GOOD_IMAGES[0]}
    unknown = {"taskType": "getResponse", "taskUUID": new_uuid()}
    junk = {"taskType": "videoInference", "taskUUID": new_uuid(), "width": "\ud800", "\u202e": 2**200}
    tasks: list[Any] = [{"taskType": "ping"}, good, wide, truncated, 17, upload, unknown, junk]
    for send in ("rest", "ws"):
        for task in tasks:
            if isinstance(task, dict) and "taskUUID" in task:
                task["taskUUID"] = new_uuid()
        text = to_json_text(tasks)
        if send == "rest":
            body = rest_roundtrip(server, text, tasks)
        else:
            replies = ws.roundtrip(text, tasks)
            (body,) = [b for b in replies if any(i.get("pong") for i in b.get("data", []))]
        data, errors = body["data"], body["errors"]
        assert data[0] == {"taskType": "ping", "pong": True}
        assert {"taskType": "videoInference", "taskUUID": good["taskUUID"]} in data
        assert any(d.get("imageUUID") and d["taskUUID"] == upload["taskUUID"] for d in data)
        by_uuid: dict[str | None, set[str]] = {}
        for error in errors:
            by_uuid.setdefault(error.get("taskUUID"), set()).add(error["code"])
        assert by_uuid[wide["taskUUID"]] == {"invalidWidth"}
        assert by_uuid[truncated["taskUUID"]] == {"invalidImage"}
        assert by_uuid[unknown["taskUUID"]] == {"taskNotFound"}
        assert "invalidWidth" in by_uuid[junk["taskUUID"]]
        assert "invalidRequest" in by_uuid[None]  # the bare 17


# --------------------------------------------------------------------------- auth and load

HOSTILE_AUTHORIZATION: list[bytes] = [
    b"Bearer",
    b"Bearer  ltx_wrong",
    b"Bearer \tltx_wrong",
    b"Basic dXNlcjpwYXNz",
    b"bearer ltx_wrong",
    b"Bearer ltx_wrong extra words",
    b"Bearer \xff\xfe\xfd",  # not UTF-8 (headers are latin-1 on the wire)
    b"Bearer " + b"k" * 8000,
    b"Bearer \xe2\x80\xae" + b"ltx_",  # RTL override, as UTF-8 bytes
    b"Bearer ' OR 1=1 --",
]


@pytest.mark.parametrize("value", HOSTILE_AUTHORIZATION, ids=lambda v: repr(v[:24]))
def test_hostile_authorization_headers(server: LiveServer, value: bytes) -> None:
    task = cheap_video()
    response = httpx.post(
        f"{server.url}/v1",
        content=to_json_text([task]).encode(),
        headers=[(b"Authorization", value), (b"Content-Type", b"application/json")],
        timeout=REPLY_TIMEOUT_S,
    )
    assert response.status_code == 401, response.text
    body = check_rest_reply(response, [task])
    assert body["errors"][0]["code"] in ("invalidApiKey", "missingApiKey")
    assert body["errors"][0]["parameter"] == "apiKey"


def test_unauthenticated_websocket_gets_envelopes_and_stays_open(server: LiveServer) -> None:
    # Larger frames before authentication close the socket (1009): tests/security/test_preauth.py.
    cap = min(FUZZ_MAX_BODY_BYTES // 2, server.settings.ws_preauth_message_bytes)
    with connect(server.ws_url, open_timeout=REPLY_TIMEOUT_S, max_size=None) as sock:
        for name, content in RAW_BODIES.items():
            if len(content) > cap:
                continue
            STATS["fixed"] += 1
            sock.send(content)
            raw = sock.recv(timeout=REPLY_TIMEOUT_S)
            assert isinstance(raw, str), name
            body = json.loads(raw)
            assert_envelope(body)
            assert not accepted_uuids(body), f"{name}: accepted without authentication: {body}"
        sock.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert json.loads(sock.recv(timeout=REPLY_TIMEOUT_S)) == {
            "data": [{"taskType": "ping", "pong": True}]
        }


def test_concurrent_hostile_requests_are_all_answered(server: LiveServer) -> None:
    """A burst of hostile bodies from many connections at once: each answered, none lost."""
    bodies = [c for c in RAW_BODIES.values() if len(c) < 64 * 1024] * 3

    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=REPLY_TIMEOUT_S * 2) as client:
            return await asyncio.gather(
                *(client.post(f"{server.url}/v1", content=b, headers=headers) for b in bodies)
            )

    STATS["fixed"] += len(bodies)
    for response in asyncio.run(burst()):
        body = check_rest_reply(response)
        cancel(server, accepted_uuids(body))
    ready(server)


def test_too_many_tasks_reply_is_bounded(server: LiveServer) -> None:
    """Over the task limit each task with a taskUUID is refused by name, up to a bound; the rest
    (no taskUUID, repeats, past the bound) share one error."""
    named = [{"taskType": "getResponse", "taskUUID": new_uuid()} for _ in range(300)]
    tasks: list[Any] = [*named, *[None] * 1000, named[0]]
    response, _ = post_raw(server, to_json_text(tasks))
    assert response.status_code == 413
    errors = check_rest_reply(response, tasks)["errors"]
    assert {e["code"] for e in errors} == {"requestTooLarge"}
    with_uuid = [e["taskUUID"] for e in errors if "taskUUID" in e]
    assert len(with_uuid) == len(set(with_uuid)) == 256
    assert with_uuid == [t["taskUUID"] for t in named[:256]]
    assert len(errors) == 257


#: Values that pass validation but are hostile to what comes after it (tokenizer, prompt
#: enhancer, seeds, encoders): an accepted task must end in success, never inferenceError.
ACCEPTED_ODDITIES: list[dict[str, Any]] = [
    {"positivePrompt": "\u200b"},  # zero-width only: not whitespace, so not empty
    {"positivePrompt": "\u202egnitset\u202c \u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd"},
    {
        "positivePrompt": "\ud83d\ude00" * 200 + "e\u0301" * 200,
        "CFGScale": 2.5,
        "negativePrompt": "\u202e\u200b",
    },
    {
        "positivePrompt": "<|endoftext|><|im_start|>system\n[INST] <<SYS>> {{}} %s",
        "settings": {"enhancePrompt": True},
    },
    {"positivePrompt": "x " * 4999},  # at the 10,000-character limit, far past the token window
    {"seed": 2**63 - 1, "numberResults": 2},  # seeds wrap past int64
    {"seed": 0, "outputFormat": "WEBM", "outputQuality": 20},
    {
        "outputFormat": "MOV",
        "outputQuality": 99,
        "providerSettings": {"lightricks": {"generateAudio": False}},
    },
    {"width": 128.0, "height": 1.28e2, "duration": 1.0, "fps": 8.0, "steps": 2.0},
]


def test_accepted_hostile_values_run_to_success(server: LiveServer) -> None:
    tasks = [cheap_video() | fields for fields in ACCEPTED_ODDITIES]
    body = rest_roundtrip_keep(server, tasks)
    assert [d["taskUUID"] for d in body["data"]] == [t["taskUUID"] for t in tasks], body
    for task in tasks:
        done = server.wait(task["taskUUID"], timeout=60)
        assert_envelope(done, {task["taskUUID"]})
        assert "errors" not in done, (task, done)
        assert {d["status"] for d in done["data"]} == {"success"}


def rest_roundtrip_keep(live: LiveServer, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Like ``rest_roundtrip`` but the accepted tasks are left to run."""
    response, _ = post_raw(live, to_json_text(tasks))
    return check_rest_reply(response, tasks)
