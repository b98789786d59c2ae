"""Reading streamed chat completions: the SSE splitting on its own, and ChunkStream on the mock LLM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from app.errors import LLMError, LLMRejected, LLMTransient
from app.llm.errors import translate
from app.llm.stream import ChunkStream, StreamChunk, data_payloads
from app.tokens import ChatMessage
from devstack.mock_llm.admin import MockAdmin
from devstack.mock_llm.server import serve
from devstack.mock_llm.state import MockConfig

EVENTS = (
    b": a comment, skipped\n"
    b"event: message\n"
    b'data: {"a": 1}\n'
    b"\n"
    b"id: 7\n"
    b"data: first line\n"
    b"data:second line, no space\n"
    b"\n"
    b"retry: 100\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
    b"data: never finished\n"
)
PAYLOADS = [b'{"a": 1}', b"first line\nsecond line, no space", b"[DONE]"]
MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Where is my order?"}]


async def _pieces(body: bytes, cuts: Iterable[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in [*cuts, len(body)]:
        yield body[start:cut]
        start = cut


async def _payloads(body: bytes, cuts: Iterable[int] = ()) -> list[bytes]:
    return [payload async for payload in data_payloads(_pieces(body, cuts))]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
async def test_payloads_are_the_same_wherever_the_body_is_cut(line_end: bytes) -> None:
    body = EVENTS.replace(b"\n", line_end)
    assert await _payloads(body) == PAYLOADS
    for cut in range(1, len(body)):
        assert await _payloads(body, [cut]) == PAYLOADS, f"cut at {cut}: {body[:cut]!r}"
    assert await _payloads(body, range(1, len(body))) == PAYLOADS  # a byte at a time


async def test_the_last_event_counts_once_its_blank_line_arrives() -> None:
    assert await _payloads(b"data: x\n\r") == [b"x"]
    assert await _payloads(b"data: x\r\r") == [b"x"]
    assert await _payloads(b"data: x\n") == []


async def _collect(stream: ChunkStream, into: list[StreamChunk]) -> None:
    async for chunk in stream:
        into.append(chunk)


def _stream_of(body: bytes | AsyncIterator[bytes]) -> ChunkStream:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx2.Response(200, content=body, request=request)
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="unused")
    return ChunkStream(cast_to=StreamChunk, response=response, client=client)


HELLO = b'data: {"choices": [{"delta": {"content": "Hello"}, "finish_reason": "stop"}]}\n\n'


@pytest.mark.parametrize(
    ("error", "message", "outcome"),
    [
        (b'{"message": "overloaded", "type": "server_error"}', "overloaded", LLMTransient),
        (b'{"message": "bad tool", "type": "invalid_request_error"}', "bad tool", LLMRejected),
        (b'{"message": null}', "An error occurred during streaming", LLMTransient),
        (b'"plain words"', "plain words", LLMTransient),
    ],
)
async def test_an_error_inside_the_stream_raises_the_sdks_error(
    error: bytes, message: str, outcome: type[LLMError]
) -> None:
    body = b'data: {"choices": [{"delta": {"content": "Hel"}}]}\n\ndata: {"error": ' + error + b"}\n\n"
    received: list[StreamChunk] = []
    with pytest.raises(openai.APIError) as caught:
        await _collect(_stream_of(body), received)
    assert [chunk.choices[0].delta.content for chunk in received] == ["Hel"]
    translated = translate(caught.value)
    assert type(translated) is outcome
    assert str(translated) == f"error from the API: {message}"


async def _cut_after_done() -> AsyncIterator[bytes]:
    yield HELLO + b"data: [DONE]\n\n"
    raise httpx2.ReadError("connection reset")


async def _stalled_after_done() -> AsyncIterator[bytes]:
    yield HELLO + b"data: [DONE]\n\n"
    await asyncio.sleep(30)
    yield b"data: never read\n\n"


@pytest.mark.parametrize("body", [_cut_after_done, _stalled_after_done], ids=["cut", "stalled"])
async def test_what_follows_done_cannot_undo_a_complete_answer(
    body: Callable[[], AsyncIterator[bytes]],
) -> None:
    received: list[StreamChunk] = []
    started = time.monotonic()
    await _collect(_stream_of(body()), received)
    assert [chunk.choices[0].delta.content for chunk in received] == ["Hello"]
    assert time.monotonic() - started < 5


def test_a_timeout_while_reading_is_reported_as_one() -> None:
    assert str(translate(httpx2.ReadTimeout("slow"))) == "timed out"


async def _complete(client: openai.AsyncOpenAI) -> list[StreamChunk]:
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    stream = await client.post(
        "/chat/completions", cast_to=ChatCompletion, body=body, stream=True, stream_cls=ChunkStream
    )
    async with stream:
        return [chunk async for chunk in stream]


async def test_a_streamed_completion_from_the_mock_reads_whole() -> None:
    async with serve(MockConfig(latency_ms=0)) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=5)
        async with client:
            chunks = await _complete(client)
            plain = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    assert text == plain.choices[0].message.content
    usage = chunks[-1].usage
    assert usage is not None
    assert plain.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        plain.usage.prompt_tokens,
        plain.usage.completion_tokens,
    )
    assert chunks[-2].choices[0].finish_reason == "stop"


async def test_a_cut_stream_raises_a_transport_error_that_is_retried() -> None:
    async with serve(MockConfig(latency_ms=0)) as url, MockAdmin(url) as admin:
        await admin.script({"break_stream": True})
        client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=5)
        async with client:
            with pytest.raises(httpx2.TransportError) as caught:
                await _complete(client)
    assert translate(caught.value).retriable
