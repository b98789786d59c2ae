"""A streamed chat completion read straight into small pydantic chunks.

The SDK's stream splits lines and fields in Python, parses each event's JSON into a dict and
hands it over to be validated once more: a tenth of the worker's CPU at 300 replies a second.
`ChunkStream` keeps the SDK's request, errors and connection handling, and only reads the body
faster: each `data:` payload goes to pydantic-core in one pass. It overrides the SDK's
`AsyncStream.__stream__`, the one touch of openai's internals, pinned by constraints.txt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import httpx2
import openai
from pydantic import BaseModel

from app.llm.tool_calls import ToolCall
from app.schemas import Usage

PINNED = ("openai",)  # the distribution whose internals this module touches
DONE = b"[DONE]"
READ_OUT_S = 0.1  # for the end of the body after [DONE], as the SDK allows
DEFAULT_ERROR_MESSAGE = "An error occurred during streaming"


class FunctionDelta(BaseModel):
    """A fragment of a called function: its name comes once, its arguments in pieces."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    """A fragment of one tool call; the fragments of a call share its `index` in the answer."""

    index: int = 0
    id: str | None = None
    function: FunctionDelta | None = None


class ChunkDelta(BaseModel):
    """The new text of one streamed chunk, or fragments of the tools it calls."""

    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    """One choice of a streamed chunk."""

    delta: ChunkDelta = ChunkDelta()
    finish_reason: str | None = None


class StreamError(BaseModel):
    """An error a provider reports inside the stream instead of as an HTTP status."""

    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class StreamChunk(BaseModel):
    """The fields of a `chat.completion.chunk` we use."""

    model: str = ""
    choices: list[ChunkChoice] = []
    usage: Usage | None = None
    error: StreamError | str | None = None


class ToolCallParts:
    """The tool calls of a streamed answer, put together from their fragments by index."""

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._arguments: dict[int, list[str]] = {}

    def add(self, fragments: list[ToolCallDelta]) -> None:
        """The fragments of one chunk."""
        for fragment in fragments:
            at = fragment.index
            arguments = self._arguments.setdefault(at, [])
            if fragment.id:
                self._ids[at] = fragment.id
            if fragment.function is not None:
                if fragment.function.name:
                    self._names[at] = self._names.get(at, "") + fragment.function.name
                if fragment.function.arguments:
                    arguments.append(fragment.function.arguments)

    def calls(self) -> tuple[ToolCall, ...]:
        """The calls, in index order; a call the provider sent without an id gets one by its index,
        since the tool's answer must name the call it answers."""
        return tuple(
            ToolCall(self._ids.get(at) or f"call_{at}", self._names.get(at, ""), "".join(pieces) or "{}")
            for at, pieces in sorted(self._arguments.items())
        )


class ChunkStream(openai.AsyncStream[StreamChunk]):
    """Pass as `stream_cls` to `AsyncOpenAI.post(..., stream=True)`; yields `StreamChunk`s.

    Raises `openai.APIError` for an error event (with the provider's `type` and `code`) and
    httpx2 transport errors as they come; `llm.translate` classifies both.
    """

    async def __stream__(self) -> AsyncIterator[StreamChunk]:
        try:
            async with contextlib.aclosing(data_payloads(self.response.aiter_bytes())) as payloads:
                async for payload in payloads:
                    if payload == DONE:
                        await _read_out(payloads)
                        return
                    chunk = StreamChunk.model_validate_json(payload)
                    if chunk.error is not None:
                        raise _api_error(chunk.error, self.response.request)
                    yield chunk
        finally:
            await self.response.aclose()


async def _read_out(rest: AsyncIterator[bytes]) -> None:
    """Read the body to its end, so HTTP/1.1 can reuse the connection.

    The answer is complete by now: a stall or an error here only means the connection is
    closed instead of reused.
    """
    with contextlib.suppress(TimeoutError, httpx2.HTTPError):
        async with asyncio.timeout(READ_OUT_S):
            async for _ in rest:
                pass


def _api_error(error: StreamError | str, request: httpx2.Request) -> openai.APIError:
    if isinstance(error, str):
        return openai.APIError(error or DEFAULT_ERROR_MESSAGE, request, body={"message": error})
    body = error.model_dump(exclude_none=True)
    return openai.APIError(error.message or DEFAULT_ERROR_MESSAGE, request, body=body)


async def data_payloads(body: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The data of each server-sent event in `body`; an event's `data:` lines are joined by LF.

    Other fields (`event:`, `id:`, `retry:`) and comments are skipped: chat completions do not
    use them. An event the body ends before finishing is dropped, as the SSE standard says.
    """
    data: list[bytes] = []
    async for line in _lines(body):
        if not line:
            if data:
                yield b"\n".join(data)
                data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)


async def _lines(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of `body` without their ends (LF, CRLF or CR), however the pieces split them."""
    pending = b""
    async for piece in body:
        lines = (pending + piece).splitlines(keepends=True)
        # Hold back an unfinished last line, and a CR whose LF may open the next piece.
        last = lines[-1] if lines else b"\n"
        pending = lines.pop() if last.endswith(b"\r") or not last.endswith(b"\n") else b""
        for line in lines:
            yield line.rstrip(b"\r\n")
    if pending:
        yield pending.rstrip(b"\r\n")
