"""The README and the documentation site (docs/, mkdocs.yml) stay true: generated tables current,
links resolving, the site building with ``mkdocs build --strict``."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from ltxserve.config import settings_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    command = ["build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(site)]
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", *command],
        cwd=root,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_settings_table_is_current() -> None:
    text = (DOCS / "settings.md").read_text()
    assert settings_table() in text, "run: python -m ltxserve.config docs/settings.md"


def test_readme_two_commands_match_ci() -> None:
    text = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make run" in text
    assert "make test" in text
    assert ci.strip().splitlines()[-1] == "make test"


def test_readme_links_resolve() -> None:
    """The README is read on the forge, not in the site: its relative links must name real files."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    relative = [link for link in links if "://" not in link]
    assert "docs/settings.md" in relative
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing


def test_site_builds_strictly(tmp_path: Path) -> None:
    result = _mkdocs_build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    for page in ("api", "engine", "scale-out", "operations", "settings", "security", "benchmarks"):
        assert (tmp_path / "site" / page / "index.html").exists(), page
    # the benchmark results are included from bench/RESULTS.md, not copied
    assert "Benchmark results" in (tmp_path / "site" / "benchmarks" / "index.html").read_text()


def test_strict_build_fails_on_a_broken_anchor(tmp_path: Path) -> None:
    """The check above can fail: the same configuration refuses a link to a missing heading."""
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "bench").mkdir()
    shutil.copy(ROOT / "bench" / "RESULTS.md", copy / "bench" / "RESULTS.md")
    page = copy / "docs" / "security.md"
    page.write_text(page.read_text() + "\nSee [nowhere](api.md#no-such-heading).\n")
    result = _mkdocs_build(copy, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr
