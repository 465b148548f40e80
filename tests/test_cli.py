"""The CLI as a user meets it, through real ``ltxserve`` subprocesses: quiet by default, one line
per error with its fix, ``keys create`` printing only the key and its instructions."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from importlib.metadata import metadata, version
from pathlib import Path

from ltxserve.logs import printable


def ltxserve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LTXSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "ltxserve.cli", *args],
        cwd=tmp_path,  # no .env from the repository
        env={**clean, "LTXSERVE_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_prints_only_the_key_and_its_instructions(tmp_path: Path) -> None:
    first = ltxserve(tmp_path, "keys", "create", "--name", "me")
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stdout.splitlines() if line.strip()]
    assert re.fullmatch(r"API key for 'me' \(id [0-9a-f-]{36}\); shown once, store it now:", lines[0])
    assert re.fullmatch(r"  ltx_[A-Za-z0-9_-]{43}", lines[1])
    assert lines[2] == "Send it as `Authorization: Bearer <key>` or as a Runware SDK's api_key."
    assert lines[3] == "Webhook signing secret (Standard Webhooks), also shown once:"
    assert re.fullmatch(r"  whsec_\S+", lines[4])
    assert len(lines) == 5
    # A fresh database: the migration announces itself in one line (alembic says nothing).
    notes = first.stderr.strip().splitlines()
    assert len(notes) == 1, first.stderr
    assert re.search(r"database migrated to \w+ \(was empty\)", notes[0])

    again = ltxserve(tmp_path, "keys", "create", "--name", "you")
    assert again.returncode == 0
    assert again.stderr == ""
    listed = ltxserve(tmp_path, "keys", "list")
    assert [line.split()[2] for line in listed.stdout.splitlines()] == ["me", "you"]


def test_keys_commands_do_not_load_the_engine(tmp_path: Path) -> None:
    """``ltxserve keys`` needs the database alone: with the engine's imports (torch, diffusers)
    each call took ~10 s on 2 cores."""
    code = (
        "import sys\n"
        "from ltxserve.cli import app\n"
        "try:\n"
        "    app(['keys', 'list'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'ltxserve.runtime') if m in sys.modules))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LTXSERVE_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**clean, "LTXSERVE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_verbose_shows_library_logs(tmp_path: Path) -> None:
    """The quiet default comes from log levels: --verbose lets alembic's INFO lines through."""
    out = ltxserve(tmp_path, "--verbose", "keys", "list")
    assert out.returncode == 0, out.stderr
    assert "Running upgrade" in out.stderr


def test_version(tmp_path: Path) -> None:
    out = ltxserve(tmp_path, "--version")
    assert (out.returncode, out.stdout) == (0, f"ltxserve {version('ltxserve')}\n")


def test_license_is_an_spdx_expression() -> None:
    assert metadata("ltxserve")["License-Expression"] == "Apache-2.0"


def test_errors_are_one_line_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = ltxserve(
        tmp_path, "keys", "list", LTXSERVE_DATABASE_URL=f"postgresql://u:secret@127.0.0.1:{port}/x"
    )
    assert down.returncode == 1
    assert down.stdout == ""
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert down.stderr.startswith("error: database error:")
    assert "LTXSERVE_DATABASE_URL" in down.stderr
    assert "secret" not in down.stderr

    bad = ltxserve(tmp_path, "keys", "list", LTXSERVE_PORT="eighty")
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "LTXSERVE_PORT" in bad.stderr
    assert "'eighty'" in bad.stderr
    assert "Traceback" not in bad.stderr

    traced = ltxserve(tmp_path, "--verbose", "keys", "list", LTXSERVE_PORT="eighty")
    assert "Traceback" in traced.stderr


def test_printable_drops_control_characters() -> None:
    garbage = "a\x00b\x1b[31mc\ufffd\u200bd\n" + "x" * 500
    shown = printable(garbage, limit=20)
    assert shown.startswith("ab[31mcd")
    assert len(shown) == 20
    assert all(ch.isprintable() for ch in shown)
