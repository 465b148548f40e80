"""``serviceUnavailable`` (503): what a client gets while the database cannot be reached."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from ltxserve.api.app import create_app
from ltxserve.config import Settings
from ltxserve.runtime import Runtime


def test_database_down_is_503_service_unavailable(tmp_path: Path) -> None:
    # A SQLite file in a directory that does not exist: every query fails to connect.
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'ltxserve.db'}"
    runtime = Runtime.build(Settings(data_dir=tmp_path, database_url=url), with_worker=False)
    app = create_app(runtime, manage_lifecycle=False)
    with TestClient(app) as client:
        rest = client.post(
            "/v1",
            json=[{"taskType": "getResponse", "taskUUID": "0b3c1e6e-1111-4c1c-9b0e-2f0c0a7c1d01"}],
            headers={"Authorization": "Bearer ltx_somekey"},
        )
        assert rest.status_code == 503, rest.text
        assert [e["code"] for e in rest.json()["errors"]] == ["serviceUnavailable"]

        with client.websocket_connect("/v1") as ws:
            ws.send_json([{"taskType": "authentication", "apiKey": "ltx_somekey"}])
            (error,) = ws.receive_json()["errors"]
            assert (error["code"], error["taskType"]) == ("serviceUnavailable", "authentication")
