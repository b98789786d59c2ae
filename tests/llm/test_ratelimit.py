"""The RPM/TPM caps on their own: token buckets that refill over a minute, and the budget that waits.

Time is a fake clock that only the budget's own sleeps (and the tests) move, so what is checked
is how long each request is made to wait, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.llm import pacing
from app.llm.pacing import RequestBudget, TokenBucket


class Clock:
    """`time.monotonic` and `asyncio.sleep` of app.llm.pacing: sleeping moves the time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # other tasks run, as in a real sleep


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(pacing, "time", fake)
    monkeypatch.setattr(pacing, "asyncio", SimpleNamespace(Lock=asyncio.Lock, sleep=fake.sleep))
    return fake


def test_a_new_bucket_is_full_and_never_holds_more_than_a_minutes_worth(clock: Clock) -> None:
    bucket = TokenBucket(60)
    assert bucket.wait_s(60) == 0.0

    clock.now += 5  # refilling a full bucket must not raise it above capacity
    assert bucket.wait_s(60) == 0.0
    bucket.take(60)

    assert bucket.wait_s(1) == pytest.approx(1.0)


def test_wait_is_zero_within_what_is_left_and_positive_beyond_it(clock: Clock) -> None:
    bucket = TokenBucket(60)  # one unit a second
    bucket.take(30)

    assert bucket.wait_s(30) == 0.0
    assert bucket.wait_s(31) == pytest.approx(1.0)


@pytest.mark.parametrize("per_minute", [60, 3000])
def test_an_emptied_bucket_refills_at_a_sixtieth_of_its_rate_each_second(
    clock: Clock, per_minute: int
) -> None:
    bucket = TokenBucket(per_minute)
    bucket.take(per_minute)
    one_second_worth = per_minute / 60

    assert bucket.wait_s(one_second_worth) == pytest.approx(1.0)
    clock.now += 0.2
    assert bucket.wait_s(one_second_worth) == pytest.approx(0.8)


def test_amounts_above_capacity_are_capped_to_one_minutes_worth(clock: Clock) -> None:
    bucket = TokenBucket(60)
    assert bucket.wait_s(1000) == 0.0

    bucket.take(1000)  # spends the 60 there are, no debt beyond them

    assert bucket.wait_s(1000) == pytest.approx(60.0)
    assert bucket.wait_s(60) == pytest.approx(60.0)


async def test_a_budget_without_caps_never_waits_and_does_not_count_tokens(clock: Clock) -> None:
    budget = RequestBudget(None, None)
    assert budget.counts_tokens is False

    for _ in range(1000):
        await budget.acquire(1_000_000)

    assert clock.slept == []


async def test_an_rpm_cap_lets_a_minutes_burst_through_then_paces_the_next_request(clock: Clock) -> None:
    budget = RequestBudget(120, None)  # two requests a second, a burst of 120 at the start
    assert budget.counts_tokens is False

    for _ in range(120):
        await budget.acquire(0)
    assert clock.slept == []

    await budget.acquire(0)
    assert sum(clock.slept) == pytest.approx(0.5)


async def test_waiting_requests_go_first_come_first_served(clock: Clock) -> None:
    budget = RequestBudget(240, None)  # four a second
    for _ in range(240):
        await budget.acquire(0)
    finished: list[str] = []

    async def request(name: str) -> None:
        await budget.acquire(0)
        finished.append(name)

    first = asyncio.create_task(request("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(request("second"))
    await asyncio.gather(first, second)

    assert finished == ["first", "second"]
    assert sum(clock.slept) == pytest.approx(0.5)  # a quarter of a second each, one after the other


async def test_a_tpm_cap_counts_tokens_and_holds_a_request_larger_than_what_is_left(clock: Clock) -> None:
    budget = RequestBudget(None, 600)  # ten tokens a second
    assert budget.counts_tokens is True

    await budget.acquire(500)
    await budget.acquire(90)
    assert clock.slept == []

    await budget.acquire(15)  # 10 left: 5 more take half a second
    assert sum(clock.slept) == pytest.approx(0.5)


async def test_with_both_caps_the_longer_wait_applies(clock: Clock) -> None:
    budget = RequestBudget(6000, 600)  # requests plenty, tokens ten a second
    await budget.acquire(600)

    await budget.acquire(5)
    assert sum(clock.slept) == pytest.approx(0.5)
