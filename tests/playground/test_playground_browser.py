"""The playground in a real browser: what a person does, checked against the public API."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.api.conftest import LiveServer
from tests.playground.conftest import PageProbe, save_readme_shot

pytestmark = pytest.mark.slow

TINY = {"size": "128x128", "duration": "1", "fps": "8", "steps": "2"}


def open_page(probe: PageProbe, live: LiveServer, key: str | None = None) -> Any:
    page = probe.page
    page.goto(live.url + "/")
    page.fill("#apiKey", key if key is not None else live.key)
    page.click("#connect")
    return page


def wait_connected(page: Any) -> None:
    page.wait_for_selector('#connection[data-state="ready"]')


def fill_tiny(page: Any, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.select_option("#size", TINY["size"])
    for field in ("duration", "fps", "steps"):
        page.fill(f"#{field}", TINY[field])
    page.uncheck("#enhancePrompt")


def wait_done(page: Any, timeout_ms: int = 45_000) -> Any:
    """The newest task card once it has finished, and its <video> once metadata has loaded."""
    card = page.locator("#tasks > li").first
    page.wait_for_function(
        """() => {
            const card = document.querySelector('#tasks > li');
            return card && !['queued', 'processing', 'cancelling'].includes(card.dataset.status);
        }""",
        timeout=timeout_ms,
    )
    assert card.get_attribute("data-status") == "done", card.inner_text()
    card.locator("video").evaluate(
        """video => video.readyState >= 1 ? true : new Promise((resolve, reject) => {
            video.addEventListener('loadedmetadata', () => resolve(true), {once: true});
            const failed = () => reject(new Error('media error ' + video.error?.code));
            video.addEventListener('error', failed, {once: true});
        })"""
    )
    return card


def video_shape(card: Any) -> dict[str, float]:
    result: dict[str, float] = card.locator("video").evaluate(
        "v => ({width: v.videoWidth, height: v.videoHeight, duration: v.duration})"
    )
    return result


def sent_tasks(probe: PageProbe) -> list[dict[str, Any]]:
    return [task for frame in probe.sent for task in json.loads(frame)]


def get_response(live: LiveServer, task_uuid: str) -> dict[str, Any]:
    reply = live.post([{"taskType": "getResponse", "taskUUID": task_uuid}])
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_text_to_video(probe: PageProbe, live: LiveServer) -> None:
    page = open_page(probe, live)
    wait_connected(page)
    fill_tiny(page, "a red kite over green hills at dusk, wind and distant birds")
    page.check("#includeCost")
    page.click("#generate")
    card = wait_done(page)

    shape = video_shape(card)
    assert (shape["width"], shape["height"]) == (128, 128)
    assert abs(shape["duration"] - 1.0) <= 1 / 8 + 1e-3, shape

    # The page shows what getResponse reports for the same task over REST.
    task_uuid = card.get_attribute("data-task-uuid")
    (item,) = get_response(live, task_uuid)["data"]
    assert card.locator('[data-field="seed"]').inner_text() == str(item["seed"])
    assert card.locator('[data-field="cost"]').inner_text() == f"${item['cost']:.4f}"
    assert card.locator('[data-field="nsfw"]').inner_text().startswith("no")
    assert card.locator('[data-field="format"]').inner_text() == "MP4"
    assert card.locator("a.download").get_attribute("href") == item["videoURL"]
    assert card.locator("video").get_attribute("src") == item["videoURL"]

    # What went over the wire is the public protocol, in Runware's task format.
    tasks = sent_tasks(probe)
    assert tasks[0] == {"taskType": "authentication", "apiKey": live.key}
    (video,) = [t for t in tasks if t["taskType"] == "videoInference"]
    assert video["taskUUID"] == task_uuid
    assert {k: video[k] for k in ("width", "height", "duration", "fps", "steps", "CFGScale")} == {
        "width": 128, "height": 128, "duration": 1, "fps": 8, "steps": 2, "CFGScale": 4,
    }  # fmt: skip
    assert video["settings"] == {"enhancePrompt": False}
    assert video["includeCost"] is True
    # Progress and the result were pushed on the socket, not only polled.
    received = [json.loads(frame) for frame in probe.received]
    pushed = [i for m in received for i in m.get("data", []) if i.get("taskUUID") == task_uuid]
    assert any(i.get("status") == "processing" and "progress" in i for i in pushed)

    # The key lives in this tab's sessionStorage only: never in a URL or localStorage.
    assert page.evaluate("sessionStorage.getItem('ltxserve.playground.apiKey')") == live.key
    assert page.evaluate("localStorage.length") == 0
    assert not [url for url in probe.request_urls if live.key in url]

    page.evaluate("window.scrollTo(0, 0)")
    # The page seeks to the first frame so the player is not black; let that finish.
    card.locator("video").evaluate(
        """video => (video.readyState >= 2 && !video.seeking) || new Promise(resolve =>
            video.addEventListener('seeked', () => resolve(true), {once: true}))"""
    )
    page.wait_for_timeout(1500)  # the player's own loading spinner fades out
    save_readme_shot(probe.screenshot("text-to-video-done"))

    # The sound track decodes too (AAC in MP4): play it through and count decoded audio bytes.
    decoded = card.locator("video").evaluate(
        """video => new Promise((resolve, reject) => {
            video.addEventListener('ended', () => resolve(video.webkitAudioDecodedByteCount), {once: true});
            video.play().catch(reject);
        })"""
    )
    assert decoded > 0

    # A reload keeps the history (sessionStorage) and the key, and reconnects on its own.
    page.reload()
    wait_connected(page)
    assert page.locator(f'#tasks > li[data-task-uuid="{task_uuid}"]').count() == 1


def png_bytes(color: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (160, 96), color)
    for x in range(160):  # a gradient, so the image is not trivially compressible
        image.putpixel((x, 48), (x, 255 - x, 128))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_image_to_video(probe: PageProbe, live: LiveServer, tmp_path: Path) -> None:
    page = open_page(probe, live)
    wait_connected(page)

    # Drag and drop onto the drop zone puts the file in the form...
    page.evaluate(
        """bytes => {
            const file = new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'});
            const data = new DataTransfer();
            data.items.add(file);
            const drop = new DragEvent('drop', {dataTransfer: data, bubbles: true});
            document.getElementById('drop').dispatchEvent(drop);
        }""",
        list(png_bytes((200, 40, 40))),
    )
    page.wait_for_selector("#image-preview:visible")
    assert "dropped.png" in page.inner_text("#drop")

    # ...and so does the file picker (the one this task uses).
    picked = tmp_path / "first-frame.png"
    picked.write_bytes(png_bytes((30, 90, 200)))
    page.set_input_files("#image", str(picked))
    page.wait_for_function("document.getElementById('drop').innerText.includes('first-frame.png')")
    probe.screenshot("image-selected")

    fill_tiny(page, "the blue card slowly tilts toward the camera")
    page.click("#generate")
    card = wait_done(page)
    shape = video_shape(card)
    assert (shape["width"], shape["height"]) == (128, 128)

    tasks = sent_tasks(probe)
    (upload,) = [t for t in tasks if t["taskType"] == "imageUpload"]
    assert upload["image"].startswith("data:image/png;base64,")
    uploaded = [
        i
        for frame in probe.received
        for i in json.loads(frame).get("data", [])
        if i.get("taskType") == "imageUpload"
    ]
    (video,) = [t for t in tasks if t["taskType"] == "videoInference"]
    assert video["inputs"] == {"frameImages": [{"image": uploaded[0]["imageUUID"], "frame": "first"}]}
    assert "first-frame image" in card.inner_text()
    probe.screenshot("image-to-video-done")


def test_server_error_shows_next_to_the_field(probe: PageProbe, live: LiveServer) -> None:
    page = open_page(probe, live)
    wait_connected(page)
    fill_tiny(page, "a lighthouse in fog")
    page.select_option("#size", "custom")
    page.click(".advanced summary")
    page.check("#raw")  # send 130 as typed, so the server is the one to refuse it
    page.fill("#width", "130")
    page.fill("#height", "128")
    page.click("#generate")

    error = page.locator("#width-error")
    error.wait_for(state="visible")
    # The very words the server uses for this value.
    rest = live.post(
        [
            {
                "taskType": "videoInference",
                "taskUUID": "00000000-0000-4000-8000-000000000001",
                "model": "lightricks:ltx@2",
                "positivePrompt": "x",
                "width": 130,
                "height": 128,
            }
        ]
    ).json()
    (expected,) = [e["message"] for e in rest["errors"] if e.get("parameter") == "width"]
    assert expected in error.inner_text()
    assert page.get_attribute("#width", "aria-invalid") == "true"
    assert page.locator("#height-error").is_hidden()
    assert page.locator("#tasks > li").count() == 0  # nothing was accepted
    error.scroll_into_view_if_needed()
    probe.screenshot("bad-width")

    # Without raw mode the custom value is snapped to the 64 grid instead.
    page.uncheck("#raw")
    assert page.input_value("#width") == "128"
    page.fill("#height", "1000")
    page.locator("#height").blur()
    assert page.input_value("#height") == "1024"


def test_wrong_key_is_reported_at_the_key_field(probe: PageProbe, live: LiveServer) -> None:
    page = open_page(probe, live, key="not-a-real-key")
    error = page.locator("#apiKey-error")
    error.wait_for(state="visible")
    assert re.search(r"invalid api key", error.inner_text(), re.IGNORECASE)
    assert page.get_attribute("#connection", "data-state") == "auth-failed"
    probe.screenshot("wrong-key")

    # Generate while refused: told to fix the connection, nothing sent.
    page.fill("#prompt", "anything")
    page.click("#generate")
    assert page.locator("#form-error").is_visible()
    assert not [t for t in sent_tasks(probe) if t["taskType"] == "videoInference"]

    # The right key clears the message.
    page.fill("#apiKey", live.key)
    page.click("#connect")
    wait_connected(page)
    assert error.is_hidden()


def test_progress_reload_and_cancel(probe: PageProbe, live: LiveServer) -> None:
    page = open_page(probe, live)
    wait_connected(page)
    fill_tiny(page, "a long slow pan across a desert")
    for field, value in {"duration": "20", "fps": "25", "steps": "100", "numberResults": "2"}.items():
        page.fill(f"#{field}", value)
    page.click("#generate")
    card = page.locator("#tasks > li").first
    page.wait_for_selector('#tasks > li[data-status="processing"]')
    assert card.locator(".slot progress").count() == 2  # one bar per requested result
    probe.screenshot("in-progress")

    # After a reload no pushes come (they go to the connection that submitted the task):
    # the page follows the task with getResponse instead.
    page.reload()
    wait_connected(page)
    task_uuid = card.get_attribute("data-task-uuid")
    page.wait_for_function(
        "() => document.querySelector('#tasks > li .slot progress')?.value > 0", timeout=10_000
    )
    assert any(t == {"taskType": "getResponse", "taskUUID": task_uuid} for t in sent_tasks(probe))
    # the server's estimate, counting down in the card (service.eta's etaSeconds)
    page.wait_for_function(
        "() => /about \\d+ s left|finishing/.test(document.querySelector('#tasks > li .status').textContent)",
        timeout=10_000,
    )

    card.locator("button.cancel").click()
    page.wait_for_selector('#tasks > li[data-status="cancelled"]')
    assert card.locator(".slot .error").count() == 2
    assert "cancel" in card.locator(".slot .error").first.inner_text().lower()
    assert card.locator("button.cancel").is_hidden()
    (cancel,) = [t for t in sent_tasks(probe) if t["taskType"] == "taskCancel"]
    assert cancel["taskUUID"] == task_uuid
    probe.screenshot("cancelled")


def test_reconnects_and_reauthenticates(probe: PageProbe, live: LiveServer) -> None:
    routes: list[Any] = []
    sent: list[dict[str, Any]] = []

    def through(ws: Any) -> None:
        """Pass frames on to the real server, noting what the page sends; keep a handle to cut it."""
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            sent.extend(json.loads(message))
            server.send(message)

        ws.on_message(from_page)
        routes.append(ws)

    page = probe.page
    page.route_web_socket(re.compile(r".*/v1$"), through)
    open_page(probe, live)
    wait_connected(page)

    routes[-1].close(code=1011, reason="test cuts the line")
    page.wait_for_selector('#connection[data-state="waiting"]')
    assert "reconnecting" in page.inner_text("#connection")
    probe.screenshot("reconnecting")

    wait_connected(page)  # the backoff starts at about half a second
    assert len(routes) == 2
    auths = [t for t in sent if t["taskType"] == "authentication"]
    assert len(auths) == 2
    assert auths[1]["apiKey"] == live.key
    assert auths[1]["connectionSessionUUID"]  # resumes the session it had
