"""The LLM circuit breaker: while the LLM keeps failing, new messages wait instead of failing.

Closed, every call may start. After `failures_to_open` failed attempts in a row (or at once
on refused credentials) it opens: calls already running go on within their deadlines, new
ones wait in `admit()`, so the lanes fill, the consumer stops fetching, and messages stay in
Kafka instead of running into their deadlines and the DLQ. Once per probe interval one
waiting call is let through as a probe; any success closes the breaker for everyone (the
calls still running count too), a failure after a probe doubles the interval up to
`max_probe_interval_s`, and a probe that does not report back within that longest interval
(it hangs, or needed no LLM call) is followed by another.
"""

from __future__ import annotations

import asyncio
import logging
import time

from app.observability import metrics

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Counts consecutive failed LLM attempts and holds new calls while they keep failing."""

    def __init__(
        self, *, failures_to_open: int, probe_interval_s: float, max_probe_interval_s: float
    ) -> None:
        self._failures_to_open = failures_to_open
        self._first_interval_s = probe_interval_s
        self._max_interval_s = max_probe_interval_s
        self._interval_s = probe_interval_s
        self._failures = 0
        self._next_probe_at = 0.0
        self._probe_out = False
        self._closed = asyncio.Event()
        self._closed.set()
        self.reason: str | None = None
        """Why the breaker is open (the last failure), or None while closed."""

    @property
    def is_open(self) -> bool:
        """True while new calls are being held."""
        return not self._closed.is_set()

    async def admit(self) -> None:
        """Return when a call may start: at once while closed; while open, when this call is
        the next probe or a probe has closed the breaker."""
        while self.is_open:
            wait_s = self._next_probe_at - time.monotonic()
            if wait_s <= 0:
                self._probe_out = True
                self._next_probe_at = time.monotonic() + self._max_interval_s
                log.info("llm circuit open; letting one call through as a probe")
                return
            try:
                async with asyncio.timeout(wait_s):
                    await self._closed.wait()
            except TimeoutError:
                continue

    def succeeded(self) -> None:
        """An attempt reached the LLM and got an answer (or a refusal of its input)."""
        self._failures = 0
        if self.is_open:
            log.info("llm answers again; circuit closed")
            self._interval_s = self._first_interval_s
            self._probe_out = False
            self.reason = None
            self._closed.set()
            metrics.LLM_CIRCUIT_OPEN.set(0)

    def failed(self, reason: str, *, at_once: bool = False) -> None:
        """An attempt failed for a reason no message is at fault for (outage, credentials)."""
        self._failures += 1
        if self.is_open:
            self.reason = reason
            if self._probe_out:  # most likely the probe's answer: wait longer for the next one
                self._probe_out = False
                self._interval_s = min(self._interval_s * 2, self._max_interval_s)
            self._next_probe_at = time.monotonic() + self._interval_s
        elif at_once or self._failures >= self._failures_to_open:
            log.warning(
                "llm keeps failing; circuit open, new messages wait",
                extra={"failures": self._failures, "error": reason},
            )
            self.reason = reason
            self._next_probe_at = time.monotonic() + self._interval_s
            self._closed.clear()
            metrics.LLM_CIRCUIT_OPEN.set(1)
            metrics.LLM_CIRCUIT_OPENINGS.inc()
