"""The LLM circuit breaker on its own: when it opens, whom it lets through, and when it closes.

The breaker's clock is a fake that only the tests move, so whether a call is let through
depends on the probe schedule alone, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.llm import health as health_module
from app.llm.health import CircuitBreaker

PROBE_S = 0.05
HANG_GUARD_S = 5.0
"""Real time a call the schedule lets through may take to be let through (its own wait runs out)."""


class Clock:
    """`time.monotonic` of app.llm.health, moved only by the tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(health_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def breaker(max_probe_s: float = 0.4) -> CircuitBreaker:
    return CircuitBreaker(failures_to_open=3, probe_interval_s=PROBE_S, max_probe_interval_s=max_probe_s)


async def admitted_within(circuit: CircuitBreaker, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await circuit.admit()
    except TimeoutError:
        return False
    return True


async def assert_next_probe_at(circuit: CircuitBreaker, clock: Clock, at: float) -> None:
    """No call goes through just before `at` on the breaker's clock, and one goes through at it."""
    clock.now = at - PROBE_S / 10
    assert not await admitted_within(circuit, PROBE_S)  # the clock stands still: never, if too early
    clock.now = at
    assert await admitted_within(circuit, HANG_GUARD_S)


async def test_a_closed_breaker_admits_at_once_and_a_success_resets_the_count() -> None:
    circuit = breaker()
    circuit.failed("HTTP 500")
    circuit.failed("HTTP 500")
    circuit.succeeded()
    circuit.failed("HTTP 500")
    circuit.failed("HTTP 500")
    assert not circuit.is_open
    assert circuit.reason is None
    assert await admitted_within(circuit, 0.01)  # no wait at all: admit() does not yield when closed


async def test_failures_in_a_row_open_it_and_refused_credentials_open_it_at_once() -> None:
    outage = breaker()
    for _ in range(3):
        outage.failed("HTTP 503")
    credentials = breaker()
    credentials.failed("HTTP 401: bad key", at_once=True)
    assert outage.is_open
    assert outage.reason == "HTTP 503"
    assert credentials.is_open
    assert credentials.reason == "HTTP 401: bad key"


async def test_while_open_one_call_per_interval_goes_through_as_a_probe(clock: Clock) -> None:
    circuit = breaker()
    for _ in range(3):
        circuit.failed("HTTP 500")
    opened = clock.now
    clock.now = opened + PROBE_S / 2
    assert not await admitted_within(circuit, PROBE_S)
    waiters = [asyncio.create_task(circuit.admit()) for _ in range(5)]
    clock.now = opened + PROBE_S
    done, pending = await asyncio.wait(waiters, timeout=HANG_GUARD_S, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1  # the probe; the others wait for its answer, or the next interval
    circuit.succeeded()  # the probe got an answer: everyone goes
    done, pending = await asyncio.wait(waiters, timeout=HANG_GUARD_S)
    assert not pending
    assert not circuit.is_open
    assert circuit.reason is None


async def test_a_failed_probe_doubles_the_interval_up_to_its_cap(clock: Clock) -> None:
    circuit = breaker(max_probe_s=PROBE_S * 4)
    for _ in range(3):
        circuit.failed("HTTP 500")
    for interval_s in (PROBE_S, PROBE_S * 2, PROBE_S * 4, PROBE_S * 4):
        await assert_next_probe_at(circuit, clock, clock.now + interval_s)
        circuit.failed("HTTP 500")  # the probe failed too
    assert circuit.is_open


async def test_a_probe_that_never_reports_back_is_followed_by_another_after_the_longest_interval(
    clock: Clock,
) -> None:
    circuit = breaker(max_probe_s=PROBE_S * 3)
    for _ in range(3):
        circuit.failed("HTTP 500")
    await assert_next_probe_at(circuit, clock, clock.now + PROBE_S)  # a probe that hangs, or needs no call
    await assert_next_probe_at(circuit, clock, clock.now + PROBE_S * 3)


async def test_failures_of_calls_already_running_do_not_stretch_the_interval(clock: Clock) -> None:
    circuit = breaker()
    for _ in range(3):
        circuit.failed("HTTP 500")
    for _ in range(10):
        circuit.failed("HTTP 500")  # retries of calls that were running when it opened
    await assert_next_probe_at(circuit, clock, clock.now + PROBE_S)  # stretched, it would be the 0.4 s cap
