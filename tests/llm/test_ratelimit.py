"""The RPM/TPM caps on their own: token buckets that refill over a minute, and the budget that waits."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.llm.ratelimit import RequestBudget, TokenBucket


async def _timed_acquire(budget: RequestBudget, tokens: int) -> float:
    started = time.monotonic()
    await budget.acquire(tokens)
    return time.monotonic() - started


def test_a_new_bucket_is_full_and_never_holds_more_than_a_minutes_worth() -> None:
    bucket = TokenBucket(60)
    assert bucket.wait_s(60) == 0.0

    time.sleep(0.05)  # refilling a full bucket must not raise it above capacity
    bucket.take(60)

    assert 0.9 < bucket.wait_s(1) <= 1.0


def test_wait_is_zero_within_what_is_left_and_positive_beyond_it() -> None:
    bucket = TokenBucket(60)  # one unit a second
    bucket.take(30)

    assert bucket.wait_s(30) == 0.0
    assert 0.9 < bucket.wait_s(31) <= 1.0


@pytest.mark.parametrize("per_minute", [60, 3000])
def test_an_emptied_bucket_refills_at_a_sixtieth_of_its_rate_each_second(per_minute: int) -> None:
    started = time.monotonic()
    bucket = TokenBucket(per_minute)
    bucket.take(per_minute)
    one_second_worth = per_minute / 60

    assert 0.9 < bucket.wait_s(one_second_worth) <= 1.0
    time.sleep(0.2)
    wait = bucket.wait_s(one_second_worth)
    elapsed = time.monotonic() - started

    assert 1.0 - elapsed - 1e-6 <= wait <= 0.8 + 1e-6


def test_amounts_above_capacity_are_capped_to_one_minutes_worth() -> None:
    bucket = TokenBucket(60)
    assert bucket.wait_s(1000) == 0.0

    bucket.take(1000)  # spends the 60 there are, no debt beyond them

    assert 59.0 < bucket.wait_s(1000) <= 60.0
    assert bucket.wait_s(60) == pytest.approx(bucket.wait_s(1000), abs=0.01)


async def test_a_budget_without_caps_never_waits_and_does_not_count_tokens() -> None:
    budget = RequestBudget(None, None)
    assert budget.counts_tokens is False

    started = time.monotonic()
    for _ in range(1000):
        await budget.acquire(1_000_000)

    assert time.monotonic() - started < 0.5


async def test_an_rpm_cap_lets_a_minutes_burst_through_then_paces_the_next_request() -> None:
    budget = RequestBudget(120, None)  # two requests a second, a burst of 120 at the start
    assert budget.counts_tokens is False

    burst = [await _timed_acquire(budget, 0) for _ in range(120)]
    assert sum(burst) < 0.2

    assert 0.3 <= await _timed_acquire(budget, 0) <= 2.0


async def test_waiting_requests_go_first_come_first_served() -> None:
    budget = RequestBudget(240, None)  # four a second
    for _ in range(240):
        await budget.acquire(0)
    finished: list[str] = []

    async def request(name: str) -> None:
        await budget.acquire(0)
        finished.append(name)

    started = time.monotonic()
    first = asyncio.create_task(request("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(request("second"))
    await asyncio.wait_for(asyncio.gather(first, second), 5)

    assert finished == ["first", "second"]
    assert 0.3 <= time.monotonic() - started <= 2.0


async def test_a_tpm_cap_counts_tokens_and_holds_a_request_larger_than_what_is_left() -> None:
    budget = RequestBudget(None, 600)  # ten tokens a second
    assert budget.counts_tokens is True

    assert await _timed_acquire(budget, 500) < 0.1
    assert await _timed_acquire(budget, 90) < 0.1

    assert 0.3 <= await _timed_acquire(budget, 15) <= 2.0  # ~10 left, 5 more take ~0.5 s


async def test_with_both_caps_the_longer_wait_applies() -> None:
    budget = RequestBudget(6000, 600)  # requests plenty, tokens ten a second
    await budget.acquire(600)

    assert 0.3 <= await _timed_acquire(budget, 5) <= 2.0
