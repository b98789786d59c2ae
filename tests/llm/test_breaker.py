"""The LLM circuit breaker on its own: when it opens, whom it lets through, and when it closes."""

from __future__ import annotations

import asyncio
import time

from app.llm.breaker import CircuitBreaker

PROBE_S = 0.05


def breaker(max_probe_s: float = 0.4) -> CircuitBreaker:
    return CircuitBreaker(failures_to_open=3, probe_interval_s=PROBE_S, max_probe_interval_s=max_probe_s)


async def admitted_within(circuit: CircuitBreaker, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await circuit.admit()
    except TimeoutError:
        return False
    return True


async def test_a_closed_breaker_admits_at_once_and_a_success_resets_the_count() -> None:
    circuit = breaker()
    circuit.failed("HTTP 500")
    circuit.failed("HTTP 500")
    circuit.succeeded()
    circuit.failed("HTTP 500")
    circuit.failed("HTTP 500")
    assert not circuit.is_open
    assert circuit.reason is None
    assert await admitted_within(circuit, 0.01)


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


async def test_while_open_one_call_per_interval_goes_through_as_a_probe() -> None:
    circuit = breaker()
    for _ in range(3):
        circuit.failed("HTTP 500")
    started = time.monotonic()
    assert not await admitted_within(circuit, PROBE_S / 2)
    waiters = [asyncio.create_task(circuit.admit()) for _ in range(5)]
    done, pending = await asyncio.wait(waiters, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1  # the probe; the others wait for its answer, or the next interval
    assert time.monotonic() - started >= PROBE_S
    circuit.succeeded()  # the probe got an answer: everyone goes
    done, pending = await asyncio.wait(waiters, timeout=1)
    assert not pending
    assert not circuit.is_open
    assert circuit.reason is None


async def test_a_failed_probe_doubles_the_interval_up_to_its_cap() -> None:
    circuit = breaker(max_probe_s=PROBE_S * 4)
    for _ in range(3):
        circuit.failed("HTTP 500")
    gaps = []
    for _ in range(4):
        started = time.monotonic()
        await circuit.admit()
        gaps.append(time.monotonic() - started)
        circuit.failed("HTTP 500")  # the probe failed too
    assert gaps[0] <= PROBE_S * 3  # about one interval; generous for a busy machine
    assert gaps[1] >= PROBE_S * 2 * 0.9
    assert gaps[2] >= PROBE_S * 4 * 0.9
    assert PROBE_S * 4 * 0.9 <= gaps[3] <= PROBE_S * 4 * 3
    assert circuit.is_open


async def test_a_probe_that_never_reports_back_is_followed_by_another_after_the_longest_interval() -> None:
    circuit = breaker(max_probe_s=PROBE_S * 3)
    for _ in range(3):
        circuit.failed("HTTP 500")
    await circuit.admit()  # a probe that hangs, or turns out to need no LLM call
    assert not await admitted_within(circuit, PROBE_S * 2)
    assert await admitted_within(circuit, PROBE_S * 3)


async def test_failures_of_calls_already_running_do_not_stretch_the_interval() -> None:
    circuit = breaker()
    for _ in range(3):
        circuit.failed("HTTP 500")
    for _ in range(10):
        circuit.failed("HTTP 500")  # retries of calls that were running when it opened
    started = time.monotonic()
    await circuit.admit()
    assert time.monotonic() - started <= PROBE_S * 4  # stretched, it would be the 0.4 s cap
