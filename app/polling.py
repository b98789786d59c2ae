"""Waiting for something to come up: one check, retried with tenacity until it passes or time runs out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

T = TypeVar("T")


class NotYet(TimeoutError):
    """What a check waits for is not there yet; the message says what, for when time runs out."""


async def poll(check: Callable[[], Awaitable[T]], timeout_s: float, interval_s: float) -> T:
    """`check()`'s result once it stops raising NotYet, trying every `interval_s`.

    After `timeout_s` its last NotYet (a TimeoutError) propagates; any other error does at once.
    """
    retrying = AsyncRetrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry=retry_if_exception_type(NotYet),
        reraise=True,
    )
    result: T = await retrying(check)
    return result
