"""Waiting in tests for a condition to hold, never for a fixed time (app.polling underneath)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.polling import NotYet, poll

INTERVAL_S = 0.05


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0) -> None:
    """Return once `condition()` holds, looking every 50 ms; TimeoutError naming `what` after
    `timeout_s`."""

    async def check() -> None:
        if not await condition():
            raise NotYet(f"not within {timeout_s} s: {what}")

    await poll(check, timeout_s, INTERVAL_S)
