"""The official ``runware-sdk`` 1.8.0 against ltxserve, over REST or WebSocket (``transport`` in
the config), written as a Runware user would write it: only the base URL and the API key differ
from a program aimed at Runware.

``taskType`` is passed explicitly (as the SDK's README allows): without it the SDK first asks
schemas.runware.ai which task type ``lightricks:ltx@2`` is, a network call tests must not make.
``debug=True`` with a ``log_sink`` records the frames the SDK sends and receives: this SDK
deliberately hides the server's raw error code behind its own categories, and the frames show it.

Run in a virtual environment holding ``runware-sdk==1.8.0``; see ``_common`` for the arguments.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from _common import download, emit, load_config, run_scenarios, stdout_to_stderr
from runware import SDK_VERSION, LogEntry, Runware, RunwareError, file_to_data_uri


async def main() -> dict[str, Any]:
    config, api_key = load_config()
    transport = config["transport"]
    url_option = "http_base_url" if transport == "rest" else "ws_base_url"
    frames: list[dict[str, Any]] = []

    def sink(entry: LogEntry) -> None:
        if entry.category in ("send", "receive"):
            try:
                body = json.loads(entry.message)
            except ValueError:
                body = entry.message
            frames.append({"direction": entry.category, "body": body})

    def video_task(**overrides: Any) -> dict[str, Any]:
        return {
            "taskType": "videoInference",
            "taskUUID": str(uuid.uuid4()),
            **config["request"],
            "settings": {"enhancePrompt": False},
            **overrides,
        }

    def received_for(task_uuid: str) -> list[dict[str, Any]]:
        return [
            frame["body"]
            for frame in frames
            if frame["direction"] == "receive" and task_uuid in json.dumps(frame["body"])
        ]

    async with Runware(
        api_key=api_key,
        transport=transport,
        poll_timeout=120_000,
        debug=True,
        log_sink=sink,
        **{url_option: config["url"]},
    ) as client:

        def result(item: dict[str, Any]) -> dict[str, Any]:
            return {**item, "file": download(item["videoURL"], config["out_dir"], f"{item['videoUUID']}.mp4")}

        async def generate(task: dict[str, Any]) -> dict[str, Any]:
            items = await client.run(task)
            return {"taskUUID": task["taskUUID"], "results": [result(item) for item in items]}

        async def text_to_video() -> dict[str, Any]:
            return await generate(video_task())

        async def image_to_video() -> dict[str, Any]:
            (upload,) = await client.image_upload({"image": file_to_data_uri(config["image"])})
            frame_images = [{"image": upload["imageUUID"], "frame": "first"}]
            outcome = await generate(video_task(inputs={"frameImages": frame_images}))
            return {"upload": upload, **outcome}

        async def batch() -> dict[str, Any]:
            return await generate(video_task(numberResults=2, includeCost=True, seed=config["seed"]))

        async def invalid() -> dict[str, Any]:
            task = video_task(width=config["invalid_width"])
            try:
                await client.run(task)
            except RunwareError as exc:
                error = {
                    "class": type(exc).__name__,
                    "code": exc.code,
                    "parameter": exc.parameter,
                    "message": exc.message,
                    "task_uuid": exc.task_uuid,
                    "task_type": exc.task_type,
                    "status_code": exc.status_code,
                    "retryable": exc.retryable,
                }
                received = received_for(task["taskUUID"])
                return {"taskUUID": task["taskUUID"], "error": error, "received": received}
            return {"taskUUID": task["taskUUID"], "error": None}

        every = {
            "text_to_video": text_to_video,
            "image_to_video": image_to_video,
            "batch": batch,
            "invalid": invalid,
        }
        only = config.get("only") or list(every)  # a subset, in the caller's order
        scenarios = await run_scenarios({name: every[name] for name in only})
    return {
        "sdk": f"runware-sdk {SDK_VERSION}",
        "transport": transport,
        "scenarios": scenarios,
        "frames": frames,
    }


if __name__ == "__main__":
    with stdout_to_stderr():
        document = asyncio.run(main())
    emit(document)
