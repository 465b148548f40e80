"""CI's rule that a skip is a failure (tests/conftest.py), checked on a throwaway test file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = """
import pytest

def test_needs_a_missing_part():
    pytest.skip("chromium is absent")

@pytest.mark.optional
def test_opt_in():
    pytest.skip("needs a GPU")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False
"""


def _run(tmp_path: Path, strict: bool) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_sample.py"
    test_file.write_text(SAMPLE)
    # The hook under test, registered the way pytest finds it: through a conftest.
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LTXSERVE_STRICT_SKIPS")}
    if strict:
        env["LTXSERVE_STRICT_SKIPS"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-o",
            "markers=optional: opt-in",
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("strict", [False, True])
def test_skip_is_a_failure_only_in_strict_mode(tmp_path: Path, strict: bool) -> None:
    proc = _run(tmp_path, strict)
    tail = proc.stdout.strip().splitlines()[-1]
    if strict:
        assert proc.returncode == 1, proc.stdout
        for part in ("1 failed", "1 skipped", "1 xfailed"):
            assert part in tail, tail
        assert "chromium is absent" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout
        for part in ("2 skipped", "1 xfailed"):
            assert part in tail, tail
