"""openai and httpx errors translated into the project's error tree, and what a provider's
headers say about waiting: Retry-After, and the `x-ratelimit-*` headers of OpenAI-style APIs."""

from __future__ import annotations

import email.utils
import re
import time

import httpx2
import openai

from app.errors import LLMAuthError, LLMError, LLMRejected, LLMTransient

RETRIABLE_STATUS = frozenset({408, 409, 429})
AUTH_STATUS = frozenset({401, 403})
RATE_LIMITED = 429
INVALID_REQUEST = "invalid_request_error"  # OpenAI's error type for a request at fault
INSUFFICIENT_QUOTA = "insufficient_quota"  # OpenAI's code for a quota that is used up
HTTP_NOT_FOUND = 404  # the model does not exist here: the next fallback model may
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


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
