"""The official ``runware`` 0.5.24 SDK (WebSocket) against ltxserve, written as a Runware user
would write it: only the URL and the API key differ from a program aimed at Runware.

Run in a virtual environment holding ``runware==0.5.24``; see ``_common`` for the arguments.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from typing import Any

from _common import download, emit, load_config, run_scenarios, stdout_to_stderr
from runware import (
    IFrameImage,
    ISettings,
    IVideo,
    IVideoInference,
    Runware,
    RunwareAPIError,
    __version__,
)


async def main() -> dict[str, Any]:
    config, api_key = load_config()
    base = config["request"]
    runware = Runware(api_key=api_key, url=config["url"])
    await runware.connect()

    def video_request(**overrides: Any) -> IVideoInference:
        params = {
            "taskUUID": str(uuid.uuid4()),
            "settings": ISettings(enhancePrompt=False),
            **base,
            **overrides,
        }
        return IVideoInference(**params)

    def result(video: IVideo) -> dict[str, Any]:
        item = asdict(video)
        item["file"] = download(video.videoURL, config["out_dir"], f"{video.videoUUID}.mp4")
        return item

    async def generate(request: IVideoInference) -> dict[str, Any]:
        ack = await runware.videoInference(requestVideo=request)
        videos = await runware.getResponse(taskUUID=ack.taskUUID, numberResults=request.numberResults or 1)
        return {
            "taskUUID": request.taskUUID,
            "ack": {"class": type(ack).__name__, **asdict(ack)},
            "results": [result(video) for video in videos],
        }

    async def text_to_video() -> dict[str, Any]:
        return await generate(video_request())

    async def image_to_video() -> dict[str, Any]:
        upload = await runware.uploadImage(config["image"])
        request = video_request(frameImages=[IFrameImage(inputImage=upload.imageUUID, frame="first")])
        return {"upload": asdict(upload), **await generate(request)}

    async def batch() -> dict[str, Any]:
        return await generate(video_request(numberResults=2, includeCost=True, seed=config["seed"]))

    async def invalid() -> dict[str, Any]:
        request = video_request(width=config["invalid_width"])
        try:
            await runware.videoInference(requestVideo=request)
        except RunwareAPIError as exc:
            error = {"class": type(exc).__name__, "code": exc.code, "data": exc.error_data}
            return {"taskUUID": request.taskUUID, "error": error}
        return {"taskUUID": request.taskUUID, "error": None}

    try:
        scenarios = await run_scenarios(
            {
                "text_to_video": text_to_video,
                "image_to_video": image_to_video,
                "batch": batch,
                "invalid": invalid,
            }
        )
    finally:
        await runware.disconnect()
    return {"sdk": f"runware {__version__}", "transport": "websocket", "scenarios": scenarios}


if __name__ == "__main__":
    with stdout_to_stderr():
        document = asyncio.run(main())
    emit(document)
