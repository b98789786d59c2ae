"""Client-side caps on LLM requests and tokens per minute (ENRICHER_LLM_RPM, ENRICHER_LLM_TPM).

Our own token bucket rather than aiolimiter's `AsyncLimiter.acquire(amount)`: aiolimiter wakes
its waiters smallest amount first (a heap on the amount), so under a steady TPM load a long
prompt waits behind every shorter one that arrives after it; here requests wait first come,
first served under both caps at once. With several workers, each caps itself.
"""

from __future__ import annotations

import asyncio
import time

WINDOW_S = 60.0


class TokenBucket:
    """Refills `per_minute` units evenly over a minute; holds at most one minute's worth."""

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / WINDOW_S
        self._level = self._capacity
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = min(self._capacity, self._level + (now - self._stamp) * self._rate)
        self._stamp = now

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` units are available (0 when they are now)."""
        self._refill()
        amount = min(amount, self._capacity)
        return max(0.0, (amount - self._level) / self._rate)

    def take(self, amount: float) -> None:
        """Spend units that `wait_s` said are available."""
        self._level -= min(amount, self._capacity)


class RequestBudget:
    """Waits until one more request of `tokens` fits under both caps; no cap means no wait."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self._requests = TokenBucket(requests_per_minute) if requests_per_minute else None
        self._tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    @property
    def counts_tokens(self) -> bool:
        """Whether `acquire` needs the request's token count (a TPM cap is set)."""
        return self._tokens is not None

    async def acquire(self, tokens: int) -> None:
        """Block (first come, first served) until the request may be sent."""
        if self._requests is None and self._tokens is None:
            return
        async with self._lock:
            while True:
                wait = max(
                    self._requests.wait_s(1) if self._requests else 0.0,
                    self._tokens.wait_s(tokens) if self._tokens else 0.0,
                )
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self._requests:
                self._requests.take(1)
            if self._tokens:
                self._tokens.take(tokens)
