"""Plumbing shared by the client scripts; nothing here touches the SDKs.

A client script runs in the SDK's own virtual environment (``python clients/<sdk>.py CONFIG``):

- ``CONFIG`` (argv[1]) is a JSON object: ``url`` (the base URL handed to the SDK), ``transport``
  (runware-sdk only), ``image`` (a PNG to upload), ``out_dir`` (where to save the videos),
  ``request`` (the videoInference parameters every scenario starts from), ``seed``,
  ``invalid_width``;
- the API key comes from ``RUNWARE_API_KEY``;
- the script prints one JSON object on stdout: ``{"sdk": ..., "scenarios": {name: outcome}}``,
  each outcome holding what the SDK returned (or the exception it raised), and for every
  result the path of its video, downloaded from ``videoURL``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

Scenario = Callable[[], Awaitable[dict[str, Any]]]


def load_config() -> tuple[dict[str, Any], str]:
    return json.loads(sys.argv[1]), os.environ["RUNWARE_API_KEY"]


def download(url: str, out_dir: str, name: str) -> str:
    """Fetch a result's videoURL the way a user would, without the SDK."""
    path = Path(out_dir) / name
    with urllib.request.urlopen(url, timeout=30) as response:
        path.write_bytes(response.read())
    return str(path)


def describe_exception(exc: BaseException) -> dict[str, Any]:
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


async def run_scenarios(scenarios: dict[str, Scenario]) -> dict[str, Any]:
    """Run each scenario in order; an exception is recorded, not fatal, so one broken
    scenario does not hide the outcome of the others."""
    outcomes: dict[str, Any] = {}
    for name, scenario in scenarios.items():
        try:
            outcomes[name] = await scenario()
        except Exception as exc:
            outcomes[name] = {"exception": describe_exception(exc)}
    return outcomes


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), file=sys.__stdout__, flush=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Whatever the SDK prints goes to stderr: stdout carries only the JSON document."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
