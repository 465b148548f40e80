"""bench/method.py's verdicts: an effect counts only when every pair's ratio lies on its side of 1."""

from __future__ import annotations

import pytest

from tests import bench_scripts


@pytest.fixture(scope="module")
def method():  # type: ignore[no-untyped-def]
    return bench_scripts.load("method")


@pytest.mark.parametrize(
    ("a", "b", "lower_is_better", "verdict"),
    [
        ([1.0, 1.0, 1.0], [0.5, 0.6, 0.55], True, "B better (1.82x)"),
        ([1.0, 1.0, 1.0], [0.5, 0.6, 0.55], False, "B worse (1.82x)"),
        ([1.0, 1.0, 1.0], [1.2, 1.3, 1.25], True, "B worse (1.25x)"),
        ([1.0, 1.0, 1.0], [0.9, 1.1, 0.8], True, "within noise"),  # the spread covers 1.0
        ([1.0], [0.5], True, "one pair: no spread, no verdict"),
    ],
)
def test_verdict(method, a: list[float], b: list[float], lower_is_better: bool, verdict: str) -> None:  # type: ignore[no-untyped-def]
    assert method.ratio(a, b).verdict(lower_is_better) == verdict


def test_compare_interleaves_and_flips_the_order(method) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def side(name: str, value: float):  # type: ignore[no-untyped-def]
        def run() -> float:
            calls.append(name)
            return value

        return run

    cmp = method.compare(("a", side("A", 2.0)), ("b", side("B", 1.0)), pairs=3, warmup=1)
    assert calls == ["A", "B", "A", "B", "B", "A", "A", "B"]  # warm-up, then AB, BA, AB
    assert cmp.a.samples == [2.0, 2.0, 2.0]
    assert str(cmp.ratio) == "0.500 [0.500 .. 0.500]"
    assert "over 3 interleaved pairs: B better (2.00x)" in cmp.report()
