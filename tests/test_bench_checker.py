"""The bench checker's counting of lost, duplicated and reordered replies, and its latency figures."""

from __future__ import annotations

import math

import pytest

from bench.checker import Keyed, check, latency, percentile


def keyed(*message_ids: str) -> list[Keyed]:
    """Messages named `<conversation><turn>`, e.g. `a1` is turn 1 of conversation `a`."""
    return [(message_id[0], message_id) for message_id in message_ids]


INPUTS = keyed("a1", "b1", "a2", "b2", "a3", "b3")


def test_every_reply_once_in_order_is_clean() -> None:
    verdict = check(INPUTS, keyed("a1", "b1", "a2", "b2", "a3", "b3"))

    assert (verdict.inputs, verdict.replies) == (6, 6)
    assert (verdict.lost, verdict.duplicated, verdict.out_of_order, verdict.unexpected) == (0, 0, 0, 0)
    assert verdict.clean


def test_conversations_may_interleave_differently_from_the_input() -> None:
    verdict = check(INPUTS, keyed("b1", "b2", "b3", "a1", "a2", "a3"))

    assert verdict.out_of_order == 0
    assert verdict.clean


def test_a_message_without_reply_is_lost_and_does_not_reorder_the_rest() -> None:
    verdict = check(INPUTS, keyed("a1", "b1", "b2", "a3", "b3"))

    assert verdict.lost == 1
    assert verdict.out_of_order == 0
    assert not verdict.clean


def test_a_second_reply_is_a_duplicate_not_a_reorder() -> None:
    verdict = check(INPUTS, keyed("a1", "b1", "a2", "b2", "a3", "a1", "b3", "b3"))

    assert verdict.duplicated == 2
    assert verdict.out_of_order == 0
    assert verdict.replies == 8
    assert verdict.lost == 0


def test_a_reply_after_a_later_message_of_its_conversation_is_out_of_order() -> None:
    verdict = check(INPUTS, keyed("a2", "b1", "a1", "b2", "a3", "b3"))

    assert verdict.out_of_order == 1
    assert verdict.conversations_out_of_order == 1
    assert verdict.lost == 0


def test_every_reply_behind_a_later_one_counts() -> None:
    verdict = check(INPUTS, keyed("a3", "a1", "a2", "b3", "b2", "b1"))

    assert verdict.out_of_order == 4  # a1, a2 behind a3; b2, b1 behind b3
    assert verdict.conversations_out_of_order == 2


def test_a_reply_to_a_message_never_sent_is_unexpected() -> None:
    verdict = check(keyed("a1"), keyed("a1", "z9"))

    assert verdict.unexpected == 1
    assert not verdict.clean


def test_nothing_in_nothing_out() -> None:
    verdict = check([], [])

    assert (verdict.inputs, verdict.replies, verdict.lost) == (0, 0, 0)
    assert verdict.clean


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]

    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.95) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_latency_uses_the_first_reply_of_each_sent_message() -> None:
    sent_at = {"a1": 10.0, "a2": 10.5}
    replied_at = [("a1", 10.2), ("a2", 11.0), ("a1", 12.0), ("z9", 10.1)]

    figures = latency(sent_at, replied_at)

    assert figures.count == 2
    assert figures.p50_ms == pytest.approx(200.0)
    assert figures.max_ms == pytest.approx(500.0)
    assert math.isnan(latency(sent_at, []).p99_ms)
