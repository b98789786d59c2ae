"""How long an LLM attempt may stream nothing before it is abandoned: learned per model.

A hung call (the provider took the request and sends nothing) would otherwise hold a slot for
the whole attempt timeout. The deadline for the first token, and for each gap between tokens
after it, is `MULTIPLE` times the recent p99 time to first token of that model, at least
`FLOOR_S`; until `MIN_SAMPLES` calls of the model have been seen it is the attempt timeout
itself (a model that thinks for 20 s before its first token is never cut off by a guess).
`ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S` fixes it instead. An attempt that started before the
deadline was learned gets the learned one as soon as there is one (`follow_learning`): a worker
that starts with all its calls in flight would otherwise give each of them the whole attempt
timeout, and one hung call of that first wave held its conversation for 30 s.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

FLOOR_S = 1.0
MULTIPLE = 4.0
MIN_SAMPLES = 10
WINDOW = 200


class FirstTokenDeadline:
    """Recent times to first token per model, and the deadline they give."""

    def __init__(self, attempt_timeout_s: float, fixed_s: float | None = None) -> None:
        self._attempt_timeout_s = attempt_timeout_s
        self._fixed_s = fixed_s
        self._seen: dict[str, deque[float]] = {}
        self._deadline_s: dict[str, float] = {}
        self._observed: dict[str, int] = {}

    def deadline_s(self, model: str) -> float:
        """Seconds an attempt of `model` may go without a token."""
        if self._fixed_s is not None:
            return self._fixed_s
        return self._deadline_s.get(model, self._attempt_timeout_s)

    def observe(self, model: str, seconds: float) -> None:
        """One call of `model` streamed its first token after `seconds`."""
        seen = self._seen.setdefault(model, deque(maxlen=WINDOW))
        seen.append(seconds)
        observed = self._observed[model] = self._observed.get(model, 0) + 1
        if observed >= MIN_SAMPLES and observed % 10 == 0:  # one sort of 200 floats per 10 calls
            ranked = sorted(seen)
            p99 = ranked[min(len(ranked) - 1, int(len(ranked) * 0.99))]
            self._deadline_s[model] = min(self._attempt_timeout_s, max(FLOOR_S, MULTIPLE * p99))

    def learned(self, model: str) -> bool:
        """Whether `model`'s deadline is its own (fixed, or learned from its calls)."""
        return self._fixed_s is not None or model in self._deadline_s

    def follow_learning(
        self, model: str, silence: asyncio.Timeout, sent_at: float, streaming: Callable[[], bool]
    ) -> Callable[[], None]:
        """For an attempt of `model` sent at `sent_at` (loop time) before its deadline was learned:
        look every `FLOOR_S` whether it is, and then move `silence` to `sent_at` plus the learned
        deadline if nothing has streamed yet (`streaming()` false; a chunk moves it on itself).
        Returns what stops the looking, for when the attempt ends.
        """
        if self.learned(model):
            return _nothing
        loop = asyncio.get_running_loop()

        def look() -> None:
            if streaming() or silence.expired():
                return  # each token moves the deadline on from now; an expired one is over
            if not self.learned(model):
                pending[0] = loop.call_later(FLOOR_S, look)
                return
            silence.reschedule(max(loop.time(), sent_at + self.deadline_s(model)))

        pending = [loop.call_later(FLOOR_S, look)]  # the one look to come
        return lambda: pending[0].cancel()


def _nothing() -> None:
    """Nothing to stop."""
