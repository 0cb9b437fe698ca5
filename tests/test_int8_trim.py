"""How an accepted INT8 fallback is shrunk: halves that still hold the gate, within a budget of attempts."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")

from lineside.export.int8 import trim_fallback  # noqa: E402

NODES = [f"n{i}" for i in range(21)]  # one fallback group: an encoder stage of 21 nodes


def gate_needs(*culprits: str) -> tuple[list[list[str]], object]:
    """A gate that holds only while every culprit stays float; records each float set it was asked about."""
    asked: list[list[str]] = []

    def passes(extra: list[str]) -> bool:
        asked.append(extra)
        return all(c in extra for c in culprits)

    return asked, passes


def test_one_culprit_is_narrowed_down_within_the_budget() -> None:
    asked, passes = gate_needs("n3")
    kept = trim_fallback(NODES, passes, budget=4)
    assert kept == ["n2", "n3", "n4"]  # 21 -> first 10 -> first 5 -> [n0, n1] fails, [n2..n4] holds: budget spent
    assert [len(a) for a in asked] == [10, 5, 2, 3]


def test_a_culprit_in_the_second_half_is_found_after_the_first_half_fails() -> None:
    asked, passes = gate_needs("n17")
    assert trim_fallback(NODES, passes, budget=9) == ["n17"]  # 2 + 2 + 1 + 2 + 2 attempts
    assert asked[:2] == [NODES[:10], NODES[10:]]


def test_culprits_in_both_halves_keep_the_whole_set() -> None:
    asked, passes = gate_needs("n1", "n15")
    assert trim_fallback(NODES, passes, budget=4) == NODES
    assert len(asked) == 2


@pytest.mark.parametrize("extra", [[], ["n0"]])
def test_nothing_to_trim_costs_no_attempt(extra: list[str]) -> None:
    asked, passes = gate_needs()
    assert trim_fallback(extra, passes, budget=4) == extra and asked == []


def test_a_zero_budget_returns_the_accepted_set() -> None:
    asked, passes = gate_needs("n3")
    assert trim_fallback(NODES, passes, budget=0) == NODES and asked == []
