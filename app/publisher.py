"""Producing to Kafka through faust: durable sends for replies and dead letters, fast ones for chunks."""

from __future__ import annotations

import faust

from app.schemas import CustomerMessage, ReplyChunk, reply_id_for


class Publisher:
    """Sends raw bytes to faust topics."""

    async def deliver(self, topic: faust.TopicT, key: bytes | None, value: bytes) -> None:
        """Send and wait until the broker has acknowledged the record."""
        pending = await topic.send(key=key, value=value)
        await pending

    async def send(self, topic: faust.TopicT, key: bytes | None, value: bytes) -> None:
        """Hand the record to the producer without waiting for the broker."""
        await topic.send(key=key, value=value)


class ChunkPublisher:
    """Streams one reply's deltas to the chunk topic, numbered from 0; `finish` sends `done`."""

    def __init__(self, publisher: Publisher, topic: faust.TopicT, request: CustomerMessage) -> None:
        self._publisher = publisher
        self._topic = topic
        self._key = request.conversation_id.encode()
        self._request = request
        self._reply_id = reply_id_for(request.message_id)
        self._seq = 0

    async def send(self, delta: str) -> None:
        """Publish one partial piece of the reply."""
        await self._emit(delta, done=False)

    async def finish(self, delta: str = "") -> None:
        """Publish the closing chunk."""
        await self._emit(delta, done=True)

    async def _emit(self, delta: str, *, done: bool) -> None:
        chunk = ReplyChunk(
            reply_id=self._reply_id,
            message_id=self._request.message_id,
            conversation_id=self._request.conversation_id,
            seq=self._seq,
            delta=delta,
            done=done,
        )
        self._seq += 1
        await self._publisher.send(self._topic, self._key, chunk.model_dump_json().encode())
