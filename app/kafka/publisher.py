"""Producing to Kafka through faust: durable sends for replies and dead letters, fast ones for chunks."""

from __future__ import annotations

import time

import faust

from app.observability.tracing import TraceContext
from app.schemas import CustomerMessage, ReplyChunk, reply_id_for

Headers = list[tuple[str, bytes]]


class Publisher:
    """Sends raw bytes, with headers, to faust topics."""

    async def deliver(self, topic: faust.TopicT, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Send and wait until the broker has acknowledged the record."""
        pending = await topic.send(key=key, value=value, headers=headers)
        await pending

    async def send(self, topic: faust.TopicT, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Hand the record to the producer without waiting for the broker."""
        await topic.send(key=key, value=value, headers=headers)


class ChunkPublisher:
    """Streams one reply's deltas to the chunk topic, numbered from 0; `finish` sends `done`.

    Deltas arriving within `FLUSH_INTERVAL_S` of the last chunk are merged into the next one:
    a reader still sees the text grow smoothly, at a fraction of the records. After a failed
    attempt the next chunk carries `reset`, so a reader drops the text streamed before it.
    """

    FLUSH_INTERVAL_S = 0.05

    def __init__(
        self, publisher: Publisher, topic: faust.TopicT, request: CustomerMessage, trace: TraceContext
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._trace = trace
        self._key = request.conversation_id.encode()
        self._request = request
        self._reply_id = reply_id_for(request.message_id)
        self._seq = 0
        self._pending: list[str] = []
        self._last_sent = float("-inf")
        self._void = False

    async def send(self, delta: str) -> None:
        """Publish a partial piece of the reply, merged with others that came close behind."""
        self._pending.append(delta)
        if time.monotonic() - self._last_sent >= self.FLUSH_INTERVAL_S:
            await self._emit(done=False)

    def restart(self) -> None:
        """The LLM attempt failed: what was streamed of it is void, and the next chunk says so."""
        self._pending.clear()
        self._void = self._void or self._seq > 0

    async def finish(self, replacement: str | None = None) -> None:
        """Publish the closing chunk with what is pending, or with `replacement` instead of all
        that was streamed before."""
        if replacement is not None:
            self.restart()
            self._pending = [replacement]
        await self._emit(done=True)

    async def _emit(self, *, done: bool) -> None:
        chunk = ReplyChunk(
            reply_id=self._reply_id,
            message_id=self._request.message_id,
            conversation_id=self._request.conversation_id,
            seq=self._seq,
            delta="".join(self._pending),
            done=done,
            reset=self._void,
        )
        self._seq += 1
        self._void = False
        self._pending.clear()
        self._last_sent = time.monotonic()
        await self._publisher.send(
            self._topic, self._key, chunk.model_dump_json().encode(), self._trace.headers()
        )
