"""Retry-After, error translation and backoff: how the LLM call decides to wait, retry or give up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import openai
import pytest
from tenacity import AsyncRetrying, RetryCallState

from app.errors import LLMAuthError, LLMError, LLMRejected, LLMTransient
from app.llm.errors import WaitRetryAfter, retry_after_s, translate

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def _status_error(
    kind: type[openai.APIStatusError], status: int, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    response = httpx2.Response(status, request=REQUEST, headers=headers or {})
    return kind(f"refused with {status}", response=response, body=None)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": ""}, None),
        ({}, None),
        ({"retry-after-ms": "-500"}, 0.0),
    ],
    ids=[
        "ms",
        "ms-before-seconds",
        "bad-ms-falls-back",
        "seconds",
        "fraction",
        "negative",
        "empty",
        "none",
        "negative-ms",
    ],
)
def test_retry_after_reads_milliseconds_first_then_seconds(
    headers: dict[str, str], expected: float | None
) -> None:
    assert retry_after_s(httpx2.Headers(headers)) == expected


def test_retry_after_as_an_http_date_is_the_seconds_until_then() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)

    assert retry_after_s(httpx2.Headers({"retry-after": soon})) == pytest.approx(29.5, abs=1.5)
    assert retry_after_s(httpx2.Headers({"retry-after": past})) == 0.0


def test_retry_after_that_is_neither_a_number_nor_a_date_is_ignored() -> None:
    assert retry_after_s(httpx2.Headers({"retry-after": "soon"})) is None


@pytest.mark.parametrize(
    ("kind", "status", "headers", "outcome", "hint"),
    [
        (openai.RateLimitError, 429, {"retry-after": "2"}, LLMTransient, 2.0),
        (openai.InternalServerError, 500, {"retry-after-ms": "250"}, LLMTransient, 0.25),
        (openai.InternalServerError, 503, {}, LLMTransient, None),
        (openai.APIStatusError, 408, {}, LLMTransient, None),
        (openai.ConflictError, 409, {"retry-after": "1"}, LLMTransient, 1.0),
        (openai.BadRequestError, 400, {"x-should-retry": "true", "retry-after": "4"}, LLMTransient, 4.0),
        (openai.AuthenticationError, 401, {}, LLMAuthError, None),
        (openai.PermissionDeniedError, 403, {}, LLMAuthError, None),
        (openai.BadRequestError, 400, {}, LLMRejected, None),
        (openai.BadRequestError, 400, {"x-should-retry": "false"}, LLMRejected, None),
        (openai.NotFoundError, 404, {}, LLMRejected, None),
        (openai.UnprocessableEntityError, 422, {}, LLMRejected, None),
    ],
)
def test_status_errors_map_to_transient_auth_or_rejected(
    kind: type[openai.APIStatusError],
    status: int,
    headers: dict[str, str],
    outcome: type[LLMError],
    hint: float | None,
) -> None:
    translated = translate(_status_error(kind, status, headers))

    assert type(translated) is outcome
    assert str(translated) == f"HTTP {status}: refused with {status}"
    if isinstance(translated, LLMTransient):
        assert translated.retry_after_s == hint
        assert translated.retriable
    if isinstance(translated, LLMRejected):
        assert translated.status == status
        assert not translated.retriable


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (httpx2.ConnectError("refused", request=REQUEST), "connection failed: ConnectError"),
        (httpx2.RemoteProtocolError("cut", request=REQUEST), "connection failed: RemoteProtocolError"),
        (openai.APIConnectionError(request=REQUEST), "connection failed: APIConnectionError"),
        (openai.APITimeoutError(request=REQUEST), "timed out"),
        (TimeoutError(), "timed out"),
        (RuntimeError("boom"), "unexpected RuntimeError: boom"),
    ],
)
def test_connection_failures_and_timeouts_are_transient(error: Exception, message: str) -> None:
    translated = translate(error)

    assert type(translated) is LLMTransient
    assert str(translated) == message
    assert translated.retry_after_s is None


def _retry_state(attempt: int, error: BaseException) -> RetryCallState:
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


@pytest.mark.parametrize("attempt", [1, 2, 4, 8, 12])
def test_backoff_is_full_jitter_and_never_shorter_than_retry_after(attempt: int) -> None:
    wait = WaitRetryAfter()
    ceiling = min(0.25 * 2 ** (attempt - 1), 20.0)

    for error in (LLMTransient("no hint"), LLMAuthError("401")):
        waits = [wait(_retry_state(attempt, error)) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
    hinted = [wait(_retry_state(attempt, LLMTransient("429", 3.0))) for _ in range(200)]
    assert all(3.0 <= w <= max(3.0, ceiling) for w in hinted)


async def test_the_retry_loop_sleeps_what_the_server_asked() -> None:
    sleeps: list[float] = []
    failures = [LLMTransient("429", 2.5), LLMTransient("503", 4.0)]

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "answer"

    retrying = AsyncRetrying(wait=WaitRetryAfter(), sleep=record, reraise=True)

    assert await retrying(flaky) == "answer"
    assert sleeps == [2.5, 4.0]
