"""A streamed chat completion read straight into small pydantic chunks.

The SDK's stream splits lines and fields in Python, parses each event's JSON into a dict and
hands it over to be validated once more, then drains the body through anyio cancel scopes:
a tenth of the worker's CPU at 300 replies a second. `ChunkStream` keeps the SDK's request,
errors and connection handling, and only reads the body faster: each `data:` payload goes to
pydantic-core in one pass, and the body is read to its end so the connection is reused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
from pydantic import BaseModel

from app.schemas import Usage

DONE = b"[DONE]"


class ChunkDelta(BaseModel):
    """The new text of one streamed chunk."""

    content: str | None = None


class ChunkChoice(BaseModel):
    """One choice of a streamed chunk."""

    delta: ChunkDelta = ChunkDelta()
    finish_reason: str | None = None


class StreamError(BaseModel):
    """An error a provider reports inside the stream instead of as an HTTP status."""

    message: str = "An error occurred during streaming"


class StreamChunk(BaseModel):
    """The fields of a `chat.completion.chunk` we use."""

    model: str = ""
    choices: list[ChunkChoice] = []
    usage: Usage | None = None
    error: StreamError | None = None


class ChunkStream(openai.AsyncStream[StreamChunk]):
    """Pass as `stream_cls` to `AsyncOpenAI.post(..., stream=True)`; yields `StreamChunk`s."""

    async def __stream__(self) -> AsyncIterator[StreamChunk]:
        try:
            async for payload in data_payloads(self.response.aiter_bytes()):
                if payload == DONE:
                    continue  # read on to the end of the body, so the connection can be reused
                chunk = StreamChunk.model_validate_json(payload)
                if chunk.error is not None:
                    raise openai.APIError(
                        chunk.error.message, self.response.request, body=chunk.error.model_dump()
                    )
                yield chunk
        finally:
            await self.response.aclose()


async def data_payloads(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
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
