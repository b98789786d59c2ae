"""The mock LLM, driven over HTTP by the real openai client, as the worker drives it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from app.tokens import ChatMessage, count_chat, count_text
from devstack.mock_llm.chat import compose_reply
from devstack.mock_llm.server import serve
from devstack.mock_llm.state import MockConfig
from tests.helpers.polling import until

MODEL = "gpt-4o-mini"
SHUTDOWN_GUARD_S = 10.0
SYSTEM: ChatMessage = {
    "role": "system",
    "content": "You are a support agent.\n- Name: Ada Lovelace\n- tier: gold",
}


def _user(text: str) -> list[ChatMessage]:
    return [SYSTEM, {"role": "user", "content": text}]


@pytest.fixture
async def llm(mock_url: str) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=mock_url, api_key="x", max_retries=0, timeout=5)
    yield client
    await client.close()


@pytest.fixture
async def admin(mock_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mock_url.removesuffix("/v1"), timeout=5) as client:
        yield client


async def _script(admin: httpx.AsyncClient, *steps: dict[str, object]) -> None:
    response = await admin.post("/_mock/script", json={"steps": list(steps)})
    response.raise_for_status()


async def _collect(stream: AsyncStream[ChatCompletionChunk], into: list[str]) -> None:
    async for chunk in stream:
        into.append(chunk.choices[0].delta.content or "")


async def _until_in_flight(admin: httpx.AsyncClient, count: int) -> None:
    async def arrived() -> bool:
        return bool((await admin.get("/_mock/stats")).json()["in_flight"] >= count)

    await until(arrived, f"{count} requests in flight at the mock", timeout_s=10)


async def test_completion_has_openai_shape_and_usage(llm: AsyncOpenAI) -> None:
    messages = _user("Where is my order?")
    reply = await llm.chat.completions.create(model=MODEL, messages=messages)

    assert reply.id.startswith("chatcmpl-")
    assert (reply.object, reply.model) == ("chat.completion", MODEL)
    choice = reply.choices[0]
    assert (choice.message.role, choice.finish_reason) == ("assistant", "stop")
    text = choice.message.content or ""
    assert text.startswith('Hi Ada Lovelace, thanks for your message "Where is my order?".')
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == count_chat(messages, MODEL)
    assert reply.usage.completion_tokens == count_text(text, MODEL)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


async def test_stream_parses_with_usage(llm: AsyncOpenAI) -> None:
    messages = _user("Can I change my plan?")
    whole = await llm.chat.completions.create(model=MODEL, messages=messages)
    stream = await llm.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert 5 <= len(deltas) <= 8
    assert "".join(deltas) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    usage, first = chunks[-1].usage, whole.usage
    assert usage is not None
    assert first is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens > 0  # the same prompt a second time


async def test_max_tokens_cuts_the_reply(llm: AsyncOpenAI) -> None:
    reply = await llm.chat.completions.create(model=MODEL, messages=_user("hello"), max_tokens=3)

    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3


def test_reply_greets_quotes_and_counts_history() -> None:
    messages: list[ChatMessage] = [
        {"role": "system", "content": "Rules.\n  * NAME:  Grace  \nplan: pro"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {
            "role": "user",
            "content": "<context>x</context><customer_message>Refund\n please</customer_message>",
        },
    ]

    assert compose_reply(messages).startswith(
        'Hi Grace, thanks for your message "Refund please". '
        "I can see 2 earlier messages in this conversation."
    )
    assert compose_reply([{"role": "user", "content": "x" * 100}]).startswith(
        f'Hi there, thanks for your message "{"x" * 60}". I can see no earlier messages'
    )
    assert "I can see 1 earlier message in" in compose_reply(messages[:1] + messages[2:])


async def test_scripted_errors_then_success(llm: AsyncOpenAI, admin: httpx.AsyncClient) -> None:
    await _script(admin, {"status": 500}, {"status": 500})

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await llm.chat.completions.create(model=MODEL, messages=_user("hi"))
    await llm.chat.completions.create(model=MODEL, messages=_user("hi"))

    stats = (await admin.get("/_mock/stats")).json()
    assert (stats["requests"], stats["errors"], stats["completed"]) == (3, 2, 1)


async def test_rate_limit_carries_retry_after(llm: AsyncOpenAI, admin: httpx.AsyncClient) -> None:
    await _script(admin, {"status": 429, "retry_after": 2})

    with pytest.raises(openai.RateLimitError) as caught:
        await llm.chat.completions.create(model=MODEL, messages=_user("hi"))

    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"


async def test_match_hold_and_release(llm: AsyncOpenAI, admin: httpx.AsyncClient) -> None:
    await _script(admin, {"status": 500}, {"match": "slow one", "hold": True})

    slow = asyncio.create_task(llm.chat.completions.create(model=MODEL, messages=_user("the slow one")))
    with pytest.raises(openai.InternalServerError):  # the unmatched step goes to the next request
        await llm.chat.completions.create(model=MODEL, messages=_user("fast"))
    await llm.chat.completions.create(model=MODEL, messages=_user("fast again"))
    await _until_in_flight(admin, 1)  # held there: a release before it arrives would not free it
    assert not slow.done()

    (await admin.post("/_mock/release")).raise_for_status()
    async with asyncio.timeout(5):
        reply = await slow
    assert "the slow one" in (reply.choices[0].message.content or "")


async def test_break_stream_makes_iteration_raise(llm: AsyncOpenAI, admin: httpx.AsyncClient) -> None:
    await _script(admin, {"break_stream": True})
    stream = await llm.chat.completions.create(model=MODEL, messages=_user("hi"), stream=True)

    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        await _collect(stream, received)
    assert len(received) >= 2  # the role chunk and some content arrived before the cut
    assert (await admin.get("/_mock/stats")).json()["errors"] == 1


async def test_require_key_rejects_other_keys() -> None:
    async with serve(MockConfig(latency_ms=0, require_key="sk-right")) as url:
        wrong = AsyncOpenAI(base_url=url, api_key="sk-wrong", max_retries=0, timeout=5)
        right = AsyncOpenAI(base_url=url, api_key="sk-right", max_retries=0, timeout=5)
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.chat.completions.create(model=MODEL, messages=_user("hi"))
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()
        await right.chat.completions.create(model=MODEL, messages=_user("hi"))
        await wrong.close()
        await right.close()

    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(caught.value.body)


async def test_stats_count_concurrent_requests(llm: AsyncOpenAI, admin: httpx.AsyncClient) -> None:
    await _script(admin, *[{"hold": True}] * 10)

    calls = [llm.chat.completions.create(model=MODEL, messages=_user(f"m{i}")) for i in range(10)]
    tasks = [asyncio.create_task(call) for call in calls]
    await _until_in_flight(admin, 10)
    await admin.post("/_mock/release")
    await asyncio.gather(*tasks)

    stats = (await admin.get("/_mock/stats")).json()
    assert stats == {
        "requests": 10,
        "in_flight": 0,
        "max_in_flight": 10,
        "completed": 10,
        "errors": 0,
        "refused": 0,
    }


async def test_admin_config_requests_and_reset(llm: AsyncOpenAI, admin: httpx.AsyncClient) -> None:
    changed = await admin.put("/_mock/config", json={"latency_ms": 5, "error_rate": 0.0})
    assert changed.json()["latency_ms"] == 5
    for method, path, body, problem in [
        ("PUT", "/_mock/config", {"error_rate": 2}, "error_rate: Input should be less than or equal to 1"),
        ("PUT", "/_mock/config", {"latency_ms": True}, "latency_ms: Input should be a valid number"),
        ("PUT", "/_mock/config", {"nope": 1}, "nope: Extra inputs are not permitted"),
        ("POST", "/_mock/script", {"steps": [{"bogus": 1}]}, "invalid script: steps.0.bogus: Extra"),
        ("POST", "/_mock/script", {"status": 700}, "invalid script: steps.0.status: Input should be less"),
    ]:
        refused = await admin.request(method, path, json=body)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"].startswith(problem)
    models = await admin.put("/_mock/config", json={"exhausted_models": ["gpt-4o"]})
    assert models.json()["exhausted_models"] == ["gpt-4o"]
    await admin.put("/_mock/config", json={"exhausted_models": []})

    await llm.chat.completions.create(model="mock-small", messages=_user("recorded"), stream=True)
    recorded = (await admin.get("/_mock/requests")).json()["requests"]
    assert [(r["model"], r["messages"][-1]["content"], r["stream"]) for r in recorded] == [
        ("mock-small", "recorded", True)
    ]
    await admin.delete("/_mock/requests")
    assert (await admin.get("/_mock/requests")).json()["requests"] == []
    assert [m.id for m in (await llm.models.list()).data] == ["gpt-4o-mini", "gpt-4o", "mock-small"]

    await _script(admin, {"status": 500})
    await admin.post("/_mock/reset")
    await llm.chat.completions.create(model=MODEL, messages=_user("after reset"))  # script cleared
    assert (await admin.get("/_mock/stats")).json()["completed"] == 1


async def test_shutdown_is_not_blocked_by_hung_or_held_requests() -> None:
    # The client would wait longer than the test may: only the server's shutdown ends these calls.
    async with serve(MockConfig(latency_ms=0)) as url:
        client = AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=60)
        async with httpx.AsyncClient(base_url=url.removesuffix("/v1"), timeout=5) as admin:
            await _script(admin, {"hang": True}, {"hold": True})
            pending = [
                asyncio.create_task(client.chat.completions.create(model=MODEL, messages=_user(text)))
                for text in ("hang", "hold")
            ]
            await _until_in_flight(admin, 2)
        started = time.monotonic()
    # A guard against a hang (blocked, it would take the client's minute), far above the typical.
    assert time.monotonic() - started < SHUTDOWN_GUARD_S
    for task in pending:
        with pytest.raises(openai.APIError):
            await task
    await client.close()
