"""The LLM call: Retry-After, error translation, backoff, and LLMClient against the in-process mock LLM."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2
import openai
import pytest
from tenacity import AsyncRetrying, RetryCallState

from app.devtools.mock_llm.admin import MockAdmin
from app.devtools.mock_llm.server import serve
from app.devtools.mock_llm.state import MockConfig
from app.errors import LLMAuthError, LLMError, LLMRejected, LLMTransient, LLMUnavailable
from app.llm.client import ATTEMPTS_PER_FALLBACK_MODEL, CallOptions, LLMClient
from app.llm.errors import retry_after_s, translate
from app.llm.retry import WaitRetryAfter
from app.settings import Settings
from app.tokens import ChatMessage, count_chat, count_text
from tests.helpers.sinks import Collected

MODEL = "gpt-4o-mini"
FALLBACK = "gpt-4o"
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a support agent.\n- name: Ada"},
    {"role": "user", "content": "Where is my order?"},
]
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


@pytest.fixture
async def admin(mock_url: str) -> AsyncIterator[MockAdmin]:
    async with MockAdmin(mock_url) as mock_admin:
        yield mock_admin


def _settings(url: str, **env: str) -> Settings:
    return Settings.model_validate(
        {"OPENAI_BASE_URL": url, "ENRICHER_LLM_DEADLINE_S": "5", "ENRICHER_LLM_TIMEOUT_S": "2"} | env
    )


@pytest.fixture
async def client(mock_url: str) -> AsyncIterator[LLMClient]:
    llm = LLMClient(_settings(mock_url))
    yield llm
    await llm.aclose()


def _models(recorded: list[dict[str, Any]]) -> list[str]:
    return [request["model"] for request in recorded]


async def test_a_call_returns_the_text_with_usage_and_streams_it_in_deltas(
    client: LLMClient, admin: MockAdmin
) -> None:
    sink = Collected()
    completion = await client.complete(MESSAGES, CallOptions(temperature=0.2), sink)
    deltas = sink.deltas

    assert completion.text.startswith('Hi Ada, thanks for your message "Where is my order?".')
    assert completion.model == MODEL
    assert len(deltas) > 1
    assert "".join(deltas) == completion.text
    usage = completion.usage
    assert usage.prompt_tokens == count_chat(MESSAGES, MODEL)
    assert usage.completion_tokens == count_text(completion.text, MODEL)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    recorded = await admin.requests()
    assert [(r["model"], r["messages"], r["stream"]) for r in recorded] == [(MODEL, MESSAGES, True)]
    assert not client.breaker.is_open


async def test_max_tokens_reaches_the_request_and_cuts_the_answer(client: LLMClient) -> None:
    completion = await client.complete(MESSAGES, CallOptions(max_tokens=3))

    assert completion.usage.completion_tokens == 3
    assert count_text(completion.text, MODEL) == 3


async def test_two_server_errors_then_success_give_one_answer_after_three_requests(
    client: LLMClient, admin: MockAdmin
) -> None:
    await admin.script({"status": 500}, {"status": 500})

    completion = await client.complete(MESSAGES, CallOptions())

    assert "Where is my order?" in completion.text
    stats = await admin.stats()
    assert (stats["requests"], stats["errors"], stats["completed"]) == (3, 2, 1)


async def test_a_rate_limit_waits_at_least_its_retry_after_then_answers(
    client: LLMClient, admin: MockAdmin
) -> None:
    await admin.script({"status": 429, "retry_after": 1})

    started = time.monotonic()
    completion = await client.complete(MESSAGES, CallOptions())

    assert 1.0 <= time.monotonic() - started < 4.0
    assert completion.text
    assert (await admin.stats())["requests"] == 2


async def test_a_rejected_request_is_not_retried_nor_sent_to_a_fallback_model(
    mock_url: str, admin: MockAdmin
) -> None:
    client = LLMClient(_settings(mock_url, ENRICHER_FALLBACK_MODELS=FALLBACK))
    await admin.script({"status": 400})

    with pytest.raises(LLMRejected) as caught:
        await client.complete(MESSAGES, CallOptions())
    await client.aclose()

    assert caught.value.status == 400
    assert _models(await admin.requests()) == [MODEL]


async def test_a_model_that_does_not_exist_falls_back_to_the_next_model(
    mock_url: str, admin: MockAdmin
) -> None:
    client = LLMClient(_settings(mock_url, ENRICHER_FALLBACK_MODELS=f" {FALLBACK} , mock-small"))
    await admin.script({"status": 404})

    completion = await client.complete(MESSAGES, CallOptions())
    await client.aclose()

    assert client.model == MODEL
    assert completion.model == FALLBACK
    assert "Where is my order?" in completion.text
    assert _models(await admin.requests()) == [MODEL, FALLBACK]


async def test_the_deadline_names_the_last_error_of_a_single_model() -> None:
    async with serve(MockConfig(latency_ms=0, error_rate=1.0)) as url:
        client = LLMClient(_settings(url, ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1"))
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(MESSAGES, CallOptions())
        await client.aclose()
    assert str(caught.value).startswith("no answer within 1 s (last error: HTTP 500:")


async def test_a_model_that_keeps_failing_is_given_up_for_the_fallback_until_the_deadline() -> None:
    async with serve(MockConfig(latency_ms=0, error_rate=1.0)) as url, MockAdmin(url) as admin:
        settings = _settings(
            url,
            ENRICHER_LLM_DEADLINE_S="2",
            ENRICHER_LLM_TIMEOUT_S="1",
            ENRICHER_FALLBACK_MODELS=FALLBACK,
        )
        client = LLMClient(settings)
        started = time.monotonic()
        with pytest.raises(LLMUnavailable) as caught:
            await client.complete(MESSAGES, CallOptions())
        elapsed = time.monotonic() - started
        await client.aclose()
        models = _models(await admin.requests())

    assert 1.9 <= elapsed < 4.0
    assert str(caught.value).startswith("no answer within 2 s (last error: HTTP 500:")
    assert models[:ATTEMPTS_PER_FALLBACK_MODEL] == [MODEL] * ATTEMPTS_PER_FALLBACK_MODEL
    retries = models[ATTEMPTS_PER_FALLBACK_MODEL:]
    assert retries
    assert retries == [FALLBACK] * len(retries)


async def test_a_broken_stream_is_retried_into_one_whole_answer(client: LLMClient, admin: MockAdmin) -> None:
    await admin.script({"break_stream": True})
    sink = Collected()
    completion = await client.complete(MESSAGES, CallOptions(), sink)

    assert completion.text.endswith("Let me know if there is anything else I can help with.")
    assert completion.usage.completion_tokens == count_text(completion.text, MODEL)
    assert sink.restarts == 1
    assert "".join(sink.deltas) == completion.text  # the broken attempt's pieces were dropped
    stats = await admin.stats()
    assert (stats["requests"], stats["errors"], stats["completed"]) == (2, 1, 1)


async def test_a_hung_attempt_is_abandoned_at_the_attempt_timeout_and_retried(
    mock_url: str, admin: MockAdmin
) -> None:
    client = LLMClient(_settings(mock_url, ENRICHER_LLM_TIMEOUT_S="0.5"))
    await admin.script({"hang": True})

    started = time.monotonic()
    completion = await client.complete(MESSAGES, CallOptions())
    elapsed = time.monotonic() - started
    await client.aclose()

    assert completion.text
    assert 0.5 <= elapsed < 3.0
    assert _models(await admin.requests()) == [MODEL, MODEL]


async def test_refused_credentials_are_retried_and_hold_the_breaker_open_until_a_call_succeeds() -> None:
    async with serve(MockConfig(latency_ms=0, require_key="sk-right")) as url, MockAdmin(url) as admin:
        client = LLMClient(
            _settings(url, OPENAI_API_KEY="sk-wrong", ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1")
        )
        with pytest.raises(LLMUnavailable):
            await client.complete(MESSAGES, CallOptions())
        refused = client.breaker.reason if client.breaker.is_open else None
        probed = await client.probe()
        attempts = (await admin.stats())["requests"]

        await admin.config(require_key=None)
        completion = await client.complete(MESSAGES, CallOptions())
        await client.aclose()

    assert refused is not None
    assert refused.startswith("HTTP 401:")
    assert probed is not None
    assert probed.startswith("HTTP 401:")
    assert attempts >= 2
    assert completion.text
    assert not client.breaker.is_open
