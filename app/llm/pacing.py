"""How fast LLM calls go: as many in flight as the provider accepts, up to a ceiling
(`ConcurrencyLimit`), under the client-side caps on requests and tokens per minute
(`RequestBudget`: ENRICHER_LLM_RPM, ENRICHER_LLM_TPM)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from app.observability import metrics

log = logging.getLogger(__name__)

DECREASE = 0.9
# Growth within one call of the limit where the provider last refused is this many times
# slower (as TCP Cubic flattens near its last loss): without it, a quota of 16 calls was
# probed about every 25 answers, 0.15 refused calls per answer; with it, under 0.05.
NEAR_REFUSAL_SLOWDOWN = 8
GROWTH_LOG_INTERVAL_S = 5.0
WINDOW_S = 60.0


@dataclass(frozen=True)
class Call:
    """One call holding a slot: when it started, and how many were in flight with it."""

    started: float
    in_flight: int


class ConcurrencyLimit:
    """A semaphore whose size follows the provider's push-back; FIFO among waiters.

    A 429 is the provider saying "slower", not an outage. The answer is AIMD, as in TCP's
    congestion control, from the ceiling down: the limit starts at `ENRICHER_MAX_IN_FLIGHT`, and a
    429 cuts it to `DECREASE` of the calls that were in flight when the refused call was sent (the
    provider took fewer than those), and to no less than `DECREASE` of half the limit it had, once
    per round trip: a 429 on a call sent before the last cut says nothing new unless fewer were in
    flight with it. Then every answered call raises it by 1/limit (about one more call per round
    trip), slower still near where the provider last refused, and by one (doubling per round trip)
    once past that point without a refusal. The limit settles just under the provider's own and
    grows back when that rises. `ENRICHER_LLM_ADAPTIVE=off` keeps it at the ceiling.

    It starts at the ceiling, not small as TCP does: a refused call costs one quick round trip
    and is retried, while a start at 8 calls made every worker start queue its first second of
    traffic (bench.run's half load at 160 msg/s: p99 494 ms from 8, 249 ms from the ceiling).

    Pacing is separate from the limit: a Retry-After holds every call's *retry* until then, not
    only the retry of the call that got it, and an `x-ratelimit-remaining-requests: 0` holds
    every new attempt until its `x-ratelimit-reset-requests`.
    """

    def __init__(self, ceiling: int, *, adaptive: bool) -> None:
        self._ceiling = ceiling
        self._adaptive = adaptive
        self._limit = float(ceiling)
        self._slow_start = False  # no refusal yet: nothing to grow back to
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._cut_at = float("-inf")
        self._limit_at_cut = self._limit
        self._refused_at_limit: float | None = None
        self._retries_not_before = 0.0
        self._calls_not_before = 0.0
        self._growth_logged_at = float("-inf")
        metrics.LLM_CONCURRENCY_LIMIT.set(self.limit)

    @property
    def limit(self) -> int:
        """Calls that may be in flight now."""
        return max(1, int(self._limit))

    async def acquire(self, *, retry: bool) -> Call:
        """Wait for any pacing, then for a slot; returns the call for `rate_limited`.
        The caller must `release()` once the call is over."""
        await self._paced(retry)  # before taking a slot, so that a paced call holds none
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.release()  # the slot was handed to us as we were cancelled: pass it on
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        try:
            await self._paced(retry)  # a Retry-After that came while this call waited
        except BaseException:
            self.release()
            raise
        return Call(time.monotonic(), self._in_flight)

    async def _paced(self, retry: bool) -> None:
        # A later Retry-After may move the time on while this one sleeps: look again.
        while (pause := self._not_before(retry) - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(pause)

    def release(self) -> None:
        """A call is over: its slot goes to the longest waiter."""
        self._in_flight -= 1
        self._wake()

    def answered(self) -> None:
        """A call got an answer: room for one more, a little at a time."""
        if not self._adaptive or self._limit >= self._ceiling:
            return
        before = self.limit
        self._limit = min(float(self._ceiling), self._limit + self._step())
        if self.limit != before:
            metrics.LLM_CONCURRENCY_LIMIT.set(self.limit)
            now = time.monotonic()
            if now - self._growth_logged_at >= GROWTH_LOG_INTERVAL_S or self.limit == self._ceiling:
                self._growth_logged_at = now
                log.info("llm concurrency limit raised", extra={"limit": self.limit})
            self._wake()

    def _step(self) -> float:
        refused_at = self._refused_at_limit
        if self._slow_start:
            return 1.0
        if refused_at is not None and self._limit > refused_at + 1:
            # Past the old refusal without a new one: the provider's limit rose; grow fast again.
            self._refused_at_limit, self._slow_start = None, True
            return 1.0
        near = refused_at is not None and self._limit >= refused_at - 1
        return 1 / (self._limit * (NEAR_REFUSAL_SLOWDOWN if near else 1))

    def rate_limited(self, call: Call, retry_after_s: float | None) -> None:
        """`call` got a 429: cut the limit, pace the retries."""
        now = time.monotonic()
        if retry_after_s:
            self._retries_not_before = max(self._retries_not_before, now + retry_after_s)
        if not self._adaptive:
            return
        if call.started >= self._cut_at:
            self._limit_at_cut = self._limit
        elif self._refused_at_limit is None or call.in_flight >= self._refused_at_limit:
            return  # sent before the last cut and refused with as many in flight: nothing new
        self._cut_at = now
        # The provider refused with this many in flight: what it takes is fewer than that.
        # (Counted when the call started: calls held by pacing hold no slot, so the count
        # now can be far below what the provider saw.) At least half the limit at the cut,
        # as TCP halves: the connection pool sends a wave's calls in any order, and a call
        # counted 4th reached a provider that took 24 after 24 others (in the quota test, 1 start
        # in 4 cut to 4, then grew back past the quota twice over).
        refused_at = max(min(self._limit, float(call.in_flight)), self._limit_at_cut / 2, 1.0)
        self._slow_start = False
        before = self.limit
        self._refused_at_limit = refused_at
        self._limit = max(1.0, refused_at * DECREASE)
        metrics.LLM_CONCURRENCY_LIMIT.set(self.limit)
        if self.limit != before:
            log.info("llm concurrency limit cut: the provider pushes back", extra={"limit": self.limit})

    def hold_calls(self, seconds: float) -> None:
        """The provider has no requests left for `seconds`: no new attempt starts before then."""
        self._calls_not_before = max(self._calls_not_before, time.monotonic() + seconds)

    def _not_before(self, retry: bool) -> float:
        return max(self._calls_not_before, self._retries_not_before) if retry else self._calls_not_before

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)


class RequestBudget:
    """Waits until one more request of `tokens` fits under both caps; no cap means no wait.

    Our own token bucket rather than aiolimiter's `AsyncLimiter.acquire(amount)`: aiolimiter wakes
    its waiters smallest amount first (a heap on the amount), so under a steady TPM load a long
    prompt waits behind every shorter one that arrives after it; here requests wait first come,
    first served under both caps at once. With several workers, each caps itself.
    """

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
