"""Fallback models with a memory: a model that keeps refusing is cooled down, not asked first.

A model whose quota is used up (429 `insufficient_quota`), that does not exist (404), or that
failed `FAILURES_TO_COOL` attempts in a row (429s without Retry-After, 5xx, timeouts) is
cooled down: messages go straight to the next model meanwhile. The cool-down starts at
`FIRST_COOLDOWN_S` and doubles at each refusal in a row up to `MAX_COOLDOWN_S`; the first
call after it is the probe, and an answer ends the cool-downs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from app.observability import metrics

log = logging.getLogger(__name__)

FIRST_COOLDOWN_S = 30.0
MAX_COOLDOWN_S = 600.0
FAILURES_TO_COOL = 5


class ModelHealth:
    """Per model: failures in a row, the current cool-down and when it ends."""

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
