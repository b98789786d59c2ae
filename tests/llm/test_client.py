"""LLMClient against the in-process mock LLM: answers, streams, retries, fallback models, deadlines."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.devtools.mock_llm.admin import MockAdmin
from app.devtools.mock_llm.server import serve
from app.devtools.mock_llm.state import MockConfig
from app.errors import LLMRejected, LLMUnavailable
from app.llm.client import ATTEMPTS_PER_FALLBACK_MODEL, CallOptions, LLMClient
from app.settings import Settings
from app.tokens import ChatMessage, count_chat, count_text
from tests.helpers.sinks import Collected

MODEL = "gpt-4o-mini"
FALLBACK = "gpt-4o"
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a support agent.\n- name: Ada"},
    {"role": "user", "content": "Where is my order?"},
]


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
