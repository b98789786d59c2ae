"""The LLM as the worker and its health pages see it: whether new calls wait, and why.

The read-only view (`LLMHealth`) over what keeps it: the circuit breaker (`CircuitBreaker`), which
holds new calls while the LLM keeps failing, and the models cooling down (`ModelHealth`), which
are not asked first while they keep refusing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from app.observability import metrics

log = logging.getLogger(__name__)

FIRST_COOLDOWN_S = 30.0
MAX_COOLDOWN_S = 600.0
FAILURES_TO_COOL = 5


class LLMHealth(Protocol):
    """A read-only view of the LLM policy (`LLMClient`): its breaker's state and the provider's
    reachability. Its readers wait on it and report it; they never steer it."""

    @property
    def failing(self) -> str | None:
        """Why new calls are held (the LLM keeps failing: the breaker is open), or None."""

    async def admit(self) -> None:
        """Return when a new call may start: at once unless held; while held, when this call is
        the breaker's next probe or the LLM answers again."""

    async def probe(self) -> str | None:
        """None when the provider answers a model listing; otherwise a one-line reason."""


class CircuitBreaker:
    """Counts consecutive failed LLM attempts and holds new calls while they keep failing.

    Closed, every call may start. After `failures_to_open` failed attempts in a row (or at once
    on refused credentials) it opens: calls already running go on within their deadlines, new
    ones wait in `admit()`, so the lanes fill, the consumer stops fetching, and messages stay in
    Kafka instead of running into their deadlines and the DLQ. Once per probe interval one
    waiting call is let through as a probe; any success closes the breaker for everyone (the
    calls still running count too), a failure after a probe doubles the interval up to
    `max_probe_interval_s`, and a probe that does not report back within that longest interval
    (it hangs, or needed no LLM call) is followed by another.
    """

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


class ModelHealth:
    """Per model: failures in a row, the current cool-down and when it ends.

    Fallback models with a memory: a model that keeps refusing is cooled down, not asked first.
    A model whose quota is used up (429 `insufficient_quota`), that does not exist (404), or that
    failed `FAILURES_TO_COOL` attempts in a row (429s without Retry-After, 5xx, timeouts) is
    cooled down: messages go straight to the next model meanwhile. The cool-down starts at
    `FIRST_COOLDOWN_S` and doubles at each refusal in a row up to `MAX_COOLDOWN_S`; the first
    call after it is the probe, and an answer ends the cool-downs.
    """

    def __init__(self, models: Sequence[str]) -> None:
        self._models = tuple(models)
        self._failures = dict.fromkeys(self._models, 0)
        self._cooldown_s = dict.fromkeys(self._models, 0.0)
        self._until = dict.fromkeys(self._models, 0.0)
        for model in self._models:
            metrics.LLM_MODEL_COOLING.labels(model).set(0)

    def order(self) -> tuple[str, ...]:
        """The models to try, in order, those cooling down left out (all of them, when every
        one is cooling: the call must go somewhere)."""
        now = time.monotonic()
        usable = tuple(model for model in self._models if self._until[model] <= now)
        return usable or self._models

    def answered(self, model: str) -> None:
        """The model answered: whatever it refused before is forgotten."""
        if self._cooldown_s[model]:
            log.info("model answers again", extra={"model": model})
            metrics.LLM_MODEL_COOLING.labels(model).set(0)
        self._failures[model] = 0
        self._cooldown_s[model] = 0.0
        self._until[model] = 0.0

    def failed(self, model: str, *, refused: bool = False, resets_in_s: float | None = None) -> None:
        """An attempt of `model` failed; `refused` (quota used up, no such model) cools it at once.

        `resets_in_s`, when the provider says when its quota resets, bounds the cool-down.
        """
        self._failures[model] += 1
        if not refused and self._failures[model] < FAILURES_TO_COOL:
            return
        self._failures[model] = 0
        cooldown = min(MAX_COOLDOWN_S, max(FIRST_COOLDOWN_S, self._cooldown_s[model] * 2))
        self._cooldown_s[model] = cooldown
        wait = min(cooldown, resets_in_s) if resets_in_s else cooldown
        self._until[model] = time.monotonic() + wait
        metrics.LLM_MODEL_COOLING.labels(model).set(1)
        log.warning("model cooled down: it keeps refusing", extra={"model": model, "for_s": round(wait, 1)})
