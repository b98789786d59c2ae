"""The adaptive concurrency limit: a start at the ceiling, cuts on 429, slow growth near a refusal, pacing."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.llm import pacing
from app.llm.pacing import Call, ConcurrencyLimit


async def test_it_starts_at_the_ceiling_and_answers_do_not_raise_it_past() -> None:
    limit = ConcurrencyLimit(20, adaptive=True)
    assert limit.limit == 20
    for _ in range(5):
        limit.answered()
    assert limit.limit == 20


async def test_after_a_cut_answers_grow_it_back_to_the_ceiling() -> None:
    limit = ConcurrencyLimit(20, adaptive=True)
    limit.rate_limited(Call(time.monotonic(), 10), None)  # refused at 10: cut to 9
    assert limit.limit == 9
    for _ in range(2_000):
        limit.answered()
    assert limit.limit == 20


async def test_a_429_cuts_to_a_fraction_of_the_calls_in_flight_once_per_round() -> None:
    limit = ConcurrencyLimit(32, adaptive=True)
    starts = [await limit.acquire(retry=False) for _ in range(20)]  # 20 in flight, limit 32

    limit.rate_limited(starts[-1], None)  # sent with 20 in flight
    assert limit.limit == int(20 * pacing.DECREASE)
    limit.rate_limited(Call(starts[0].started, 20), None)  # sent before the cut: nothing new
    assert limit.limit == int(20 * pacing.DECREASE)
    limit.rate_limited(Call(time.monotonic(), 20), None)  # sent after it, with 20 in flight: cut again
    assert limit.limit == int(int(20 * pacing.DECREASE) * pacing.DECREASE)


async def test_the_cut_counts_the_calls_in_flight_when_the_refused_one_was_sent() -> None:
    limit = ConcurrencyLimit(40, adaptive=True)
    calls = [await limit.acquire(retry=False) for _ in range(30)]
    for _ in range(25):
        limit.release()  # 5 left in flight now, say held back by pacing
    limit.rate_limited(calls[-1], None)
    assert limit.limit == int(30 * pacing.DECREASE)


async def test_growth_is_slow_near_the_last_refusal_and_fast_past_it() -> None:
    limit = ConcurrencyLimit(32, adaptive=True)
    starts = [await limit.acquire(retry=False) for _ in range(20)]
    limit.rate_limited(starts[-1], None)  # refused at 20: cut to 18
    for _ in range(20):
        limit.release()
    answers_to = {}
    count = 0
    while limit.limit < 22 and count < 10_000:
        limit.answered()
        count += 1
        answers_to.setdefault(limit.limit, count)
    # 18 -> 19 takes about 18 answers; 19 -> 20 -> 21 near the refusal about 8x as many each.
    assert answers_to[19] < 30
    assert answers_to[21] - answers_to[19] > 8 * 19
    assert answers_to[22] - answers_to[21] <= 2  # past it: slow start again


async def test_a_cut_counts_at_least_half_the_limit_in_flight_and_the_rest_of_its_wave_nothing_new() -> None:
    limit = ConcurrencyLimit(64, adaptive=True)
    wave = [await limit.acquire(retry=False) for _ in range(64)]
    limit.rate_limited(wave[3], None)  # counted 4th, reached the provider after its quota
    assert limit.limit == int(64 / 2 * pacing.DECREASE)
    limit.rate_limited(wave[40], None)  # the same wave, more in flight: nothing new
    assert limit.limit == int(64 / 2 * pacing.DECREASE)


async def test_a_wave_refused_out_of_order_is_cut_by_its_fewest_in_flight() -> None:
    limit = ConcurrencyLimit(64, adaptive=True)
    wave = [await limit.acquire(retry=False) for _ in range(64)]
    limit.rate_limited(wave[59], None)  # the first 429 to come back: 60 in flight
    limit.rate_limited(wave[39], None)  # the same wave, 40 in flight: the provider took fewer
    assert limit.limit == int(40 * pacing.DECREASE)


async def test_a_call_sent_between_a_cut_and_its_refinement_says_nothing_new() -> None:
    limit = ConcurrencyLimit(64, adaptive=True)
    wave = [await limit.acquire(retry=False) for _ in range(64)]
    limit.rate_limited(wave[59], None)  # 60 in flight: cut to 54
    between = Call(time.monotonic(), 50)
    limit.rate_limited(wave[39], None)  # the same wave, 40 in flight: refined to 36
    limit.rate_limited(between, None)  # sent before the refinement, with more in flight
    assert limit.limit == int(40 * pacing.DECREASE)


async def test_off_keeps_the_ceiling_whatever_the_provider_says() -> None:
    limit = ConcurrencyLimit(32, adaptive=False)
    limit.rate_limited(Call(time.monotonic(), 8), None)
    limit.answered()
    assert limit.limit == 32


async def test_waiters_get_freed_slots_in_order_and_a_cut_holds_new_calls() -> None:
    limit = ConcurrencyLimit(2, adaptive=False)
    await limit.acquire(retry=False)
    await limit.acquire(retry=False)
    order: list[int] = []

    async def call(number: int) -> None:
        await limit.acquire(retry=False)
        order.append(number)

    waiting = [asyncio.create_task(call(n)) for n in range(3)]
    await asyncio.sleep(0)  # each has taken its first step: with a slot, it would have it now
    assert order == []
    limit.release()
    limit.release()
    async with asyncio.timeout(5):
        await asyncio.wait(waiting[:2])
    assert order == [0, 1]
    assert not waiting[2].done()  # no slot for it: still waiting
    limit.release()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2]


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    limit = ConcurrencyLimit(1, adaptive=False)
    await limit.acquire(retry=False)
    first = asyncio.create_task(limit.acquire(retry=False))
    second = asyncio.create_task(limit.acquire(retry=False))
    await asyncio.sleep(0)  # both wait for the slot now
    first.cancel()
    limit.release()
    async with asyncio.timeout(1.0):
        await second
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_retry_after_paces_retries_only_and_an_empty_quota_every_call() -> None:
    limit = ConcurrencyLimit(8, adaptive=True)
    started: list[str] = []

    async def attempt(name: str, *, retry: bool) -> None:
        await limit.acquire(retry=retry)
        started.append(name)
        limit.release()

    limit.rate_limited(Call(time.monotonic(), 1), 0.3)
    began = time.monotonic()
    await asyncio.gather(attempt("retry", retry=True), attempt("first attempt", retry=False))
    retry_s = time.monotonic() - began

    limit.hold_calls(0.2)
    held_from = time.monotonic()
    await limit.acquire(retry=False)
    held_s = time.monotonic() - held_from

    assert started == ["first attempt", "retry"]  # asked for later, it went first: not paced
    # Lower bounds only: a slower machine makes them longer, never shorter.
    assert retry_s >= 0.28
    assert held_s >= 0.18
