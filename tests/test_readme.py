"""The README's settings table is generated from Settings: it must be current."""

from pathlib import Path

from ltxserve.config import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_settings_table_is_current() -> None:
    text = README.read_text()
    assert settings_table() in text, "run: python -m ltxserve.config README.md"


def test_readme_two_commands_match_ci() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make run" in text
    assert "make test" in text
    assert ci.strip().splitlines()[-1] == "make test"
