"""Writing a side topic's record to Redis until Redis takes it, for the agents that apply records in
order (profiles, control commands): a record skipped while Redis is down would be lost."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_fixed

from app.errors import ContextUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

REDIS_RETRY_S = 1.0


async def until_redis_takes(write: Callable[[], Awaitable[T]], retrying: str) -> T:
    """`write()` again every REDIS_RETRY_S while it raises ContextUnavailable, logging `retrying`
    with the error before each retry; the records behind it on its partition wait meanwhile."""

    def note_retry(retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        log.warning(retrying, extra={"error": str(error)})

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(ContextUnavailable),
        wait=wait_fixed(REDIS_RETRY_S),
        before_sleep=note_retry,
    ):
        with attempt:
            return await write()
    raise AssertionError("unreachable: AsyncRetrying retries without a stop")
