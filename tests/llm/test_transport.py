"""LLMClient over HTTP on the worker's own provider client, against the in-process mock LLM: what
only a socket shows (a stream cut mid-answer, a hung connection, the key sent and the probe)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.errors import LLMUnavailable
from app.llm.client import CallOptions, LLMClient
from app.tokens import ChatMessage, count_text
from devstack.mock_llm.admin import MockAdmin
from devstack.mock_llm.server import serve
from devstack.mock_llm.state import MockConfig
from tests.helpers.provider import policy_at
from tests.helpers.sinks import Collected

MODEL = "gpt-4o-mini"
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a support agent.\n- name: Ada"},
    {"role": "user", "content": "Where is my order?"},
]


@pytest.fixture
async def admin(mock_url: str) -> AsyncIterator[MockAdmin]:
    async with MockAdmin(mock_url) as mock_admin:
        yield mock_admin


@pytest.fixture
async def client(mock_url: str) -> AsyncIterator[LLMClient]:
    llm = policy_at(mock_url)
    yield llm
    await llm.aclose()


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
    client = policy_at(mock_url, ENRICHER_LLM_TIMEOUT_S="0.5")
    await admin.script({"hang": True})

    started = asyncio.get_running_loop().time()
    completion = await client.complete(MESSAGES, CallOptions())
    elapsed = asyncio.get_running_loop().time() - started
    await client.aclose()

    assert completion.text
    assert elapsed >= 0.5
    assert [request["model"] for request in await admin.requests()] == [MODEL, MODEL]


async def test_refused_credentials_are_retried_and_hold_the_breaker_open_until_a_call_succeeds() -> None:
    async with serve(MockConfig(latency_ms=0, require_key="sk-right")) as url, MockAdmin(url) as admin:
        client = policy_at(
            url, OPENAI_API_KEY="sk-wrong", ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1"
        )
        with pytest.raises(LLMUnavailable):
            await client.complete(MESSAGES, CallOptions())
        refused = client.failing
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
    assert client.failing is None
