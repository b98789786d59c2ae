"""The retry policy of one message's LLM attempts: what is retried, how long it waits, what is logged."""

from __future__ import annotations

import logging

from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_random_exponential

from app.errors import EnricherError, LLMTransient

log = logging.getLogger("app.llm.client")  # the attempts' log lines belong to the LLM call

MAX_BACKOFF_S = 20.0


class WaitRetryAfter(wait_base):
    """Full-jitter exponential backoff, but never shorter than the server's Retry-After."""

    def __init__(self) -> None:
        self._backoff = wait_random_exponential(multiplier=0.25, max=MAX_BACKOFF_S)

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self._backoff(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        hint = error.retry_after_s if isinstance(error, LLMTransient) else None
        return max(wait, hint or 0.0)


def is_retriable(error: BaseException, *, on_same_model: bool) -> bool:
    """Retriable, and on the same model unless its quota is used up (then the next model
    answers; the last model is retried all the same, until the deadline)."""
    if isinstance(error, LLMTransient) and error.quota_exhausted:
        return on_same_model
    return isinstance(error, EnricherError) and error.retriable


def note_retry(failures: list[BaseException], retry_state: RetryCallState) -> None:
    """Log a failed attempt before its retry, and keep its error for the deadline's message."""
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    if error is not None:
        failures.append(error)
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.warning(
        "llm attempt failed; retrying",
        extra={
            "attempt": retry_state.attempt_number,
            "error": str(error),
            "retry_in_s": round(sleep, 3),
        },
    )
