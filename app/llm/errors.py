"""The LLM's failures as the project sees them: openai and httpx errors translated into the
project's error tree, what a provider's headers say about waiting (Retry-After, and the
`x-ratelimit-*` headers of OpenAI-style APIs), and the retry policy of one message's attempts:
what is retried, how long it waits, what is logged."""

from __future__ import annotations

import email.utils
import logging
import re
import time

import httpx2
import openai
from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_random_exponential

from app.errors import EnricherError, LLMAuthError, LLMError, LLMRejected, LLMTransient

log = logging.getLogger("app.llm.client")  # the attempts' log lines belong to the LLM call

RETRIABLE_STATUS = frozenset({408, 409, 429})
AUTH_STATUS = frozenset({401, 403})
RATE_LIMITED = 429
INVALID_REQUEST = "invalid_request_error"  # OpenAI's error type for a request at fault
INSUFFICIENT_QUOTA = "insufficient_quota"  # OpenAI's code for a quota that is used up
HTTP_NOT_FOUND = 404  # the model does not exist here: the next fallback model may
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_BACKOFF_S = 20.0


def retry_after_s(headers: httpx2.Headers) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or date)."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # neither seconds nor a date: no hint
    return max(moment.timestamp() - time.time(), 0.0)


def translate(error: Exception) -> LLMError:
    """Map openai/httpx errors to the project's error tree."""
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        should_retry = error.response.headers.get("x-should-retry")
        detail = f"HTTP {status}: {error.message}"
        if status == RATE_LIMITED and error.code == INSUFFICIENT_QUOTA:
            return LLMTransient(detail, quota_exhausted=True)  # no wait helps: the plan's quota is gone
        if should_retry == "true" or status in RETRIABLE_STATUS or status >= 500:
            return LLMTransient(
                detail, retry_after_s(error.response.headers), rate_limited=status == RATE_LIMITED
            )
        if status in AUTH_STATUS:
            return LLMAuthError(detail)
        return LLMRejected(detail, status)
    if isinstance(error, (openai.APITimeoutError, TimeoutError, httpx2.TimeoutException)):
        return LLMTransient("timed out")
    if isinstance(error, (openai.APIConnectionError, httpx2.TransportError)):
        return LLMTransient(f"connection failed: {type(error).__name__}")
    if isinstance(error, openai.APIError):  # reported inside a stream that had begun well
        detail = f"error from the API: {error.message}"
        if error.type == INVALID_REQUEST:
            return LLMRejected(detail)
        return LLMTransient(detail)
    return LLMTransient(f"unexpected {type(error).__name__}: {error}")


def duration_s(value: str | None) -> float | None:
    """An `x-ratelimit-reset-*` duration (`20ms`, `1s`, `6m0s`, `1h2m3.5s`) in seconds."""
    if not value:
        return None
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value.strip():
        return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def quota_reset_s(headers: httpx2.Headers) -> float | None:
    """Seconds until the provider takes requests again, when it says none (or no tokens) are left."""
    waits = [
        duration_s(headers.get(f"x-ratelimit-reset-{kind}"))
        for kind in ("requests", "tokens")
        if headers.get(f"x-ratelimit-remaining-{kind}") == "0"
    ]
    known = [wait for wait in waits if wait is not None]
    return max(known) if known else None


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
