"""A fate's records produced in order: the closing chunk, the handoff records, the reply, the dead
letter, and the reply's published mark (the table in `app.fate`); and the producing under them,
through faust: durable sends for replies and dead letters, fast ones for the chunks a reply
streams in. A dead letter is an input that could not be answered, with the reason and the raw
bytes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import assert_never

import faust

from app.errors import ErrorKind
from app.fate import (
    AlreadyPublished,
    Answered,
    Covered,
    DeadLettered,
    Failure,
    Fallback,
    Fate,
    HandedOver,
    Replayed,
    ToHuman,
)
from app.kafka.faust_app import Topics
from app.observability import metrics
from app.observability.tracing import TraceContext
from app.schemas import (
    CustomerMessage,
    DeadLetter,
    ForHuman,
    Handoff,
    Reply,
    ReplyChunk,
    SourcePosition,
    reply_id_for,
)

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
Produce = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]


class Outbox:
    """Publishes one message's fate and waits for the broker to take each durable record."""

    def __init__(
        self,
        topics: Topics,
        dead_letters: DeadLetters,
        mark_published: Callable[[Sequence[str]], Awaitable[None]],
    ) -> None:
        self._topics, self._dead_letters = topics, dead_letters
        self._mark_published = mark_published
        self._publisher = Publisher()

    def chunks_for(self, request: CustomerMessage, trace: TraceContext) -> ChunkPublisher:
        """Where the reply to `request` streams while the LLM writes it."""
        return ChunkPublisher(self._publisher, self._topics.chunks, request, trace)

    async def publish(
        self,
        message: faust.types.Message,
        fate: Fate,
        trace: TraceContext,
        chunks: Mapping[str, ChunkPublisher],
    ) -> None:
        """Publish the records `fate` calls for, in this order, each in the input's trace: the
        closing chunk (on the stream of `chunks` by message id), the handoff record or the message
        for the human, the reply, the dead letter, and only then the reply's published mark.

        Raises what the producer raises when the broker does not take a record.
        """
        match fate:
            case Answered(reply):
                await _close(chunks, reply, None)
                await self._reply(message, reply, None, trace)
            case Fallback(reply, dead_letter):
                await _close(chunks, reply, reply.text)
                await self._reply(message, reply, dead_letter, trace)
            case HandedOver(reply):
                await _close(chunks, reply, reply.text)
                await self._handoff(Handoff.of(reply), trace)  # before the reply: its mark covers both
                await self._reply(message, reply, None, trace)
            case Replayed(reply, dead_letter):  # no chunks: they went out the first time
                if reply.status == "handoff":
                    await self._handoff(Handoff.of(reply), trace)
                await self._reply(message, reply, dead_letter, trace)
            case Covered(_, dead_letter):
                await self._dead_letter(message, dead_letter, trace)
            case AlreadyPublished():
                pass
            case ToHuman(record):
                await self._handoff(record, trace)
            case DeadLettered(dead_letter):
                await self._dead_letter(message, dead_letter, trace)
            case _:
                assert_never(fate)

    async def _reply(
        self, message: faust.types.Message, reply: Reply, dead_letter: Failure | None, trace: TraceContext
    ) -> None:
        value = reply.model_dump_json().encode()
        await self._publisher.deliver(
            self._topics.replies, reply.conversation_id.encode(), value, trace.headers()
        )
        await self._dead_letter(message, dead_letter, trace)
        # After the broker's acks of the reply and of its dead letter: a crash before this line
        # repeats both (the redelivery finds the reply and its failure stored), never loses one.
        await self._mark_published(reply.answers)

    async def _dead_letter(
        self, message: faust.types.Message, dead_letter: Failure | None, trace: TraceContext
    ) -> None:
        if dead_letter is None:
            return
        source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
        await self._dead_letters.send(
            dead_letter.kind, dead_letter.detail, source, message.key, message.value, trace
        )

    async def _handoff(self, record: Handoff | ForHuman, trace: TraceContext) -> None:
        key = record.conversation_id.encode()
        value = record.model_dump_json().encode()
        await self._publisher.deliver(self._topics.handoffs, key, value, trace.headers())


async def _close(chunks: Mapping[str, ChunkPublisher], reply: Reply, text: str | None) -> None:
    """The closing chunk of the reply's stream, if it has one; with `text`, a text not from the
    LLM (fallback, handoff), as the one chunk that replaces whatever streamed before."""
    stream = chunks.get(reply.message_id)
    if stream is not None:
        await stream.finish(text)


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


class DeadLetters:
    """Writes DLQ records through `produce(key, value, headers)`, which must wait for the broker's ack.

    Details come from exceptions, which may quote a credential (a provider's 401 body does):
    `redact` cleans them before they are written or logged.
    """

    def __init__(self, produce: Produce, redact: Callable[[str], str]) -> None:
        self._produce = produce
        self._redact = redact

    async def send(
        self,
        kind: ErrorKind,
        detail: str,
        source: SourcePosition,
        key: bytes | None,
        raw: bytes | None,
        trace: TraceContext,
    ) -> None:
        """Record one failed input durably, in the input's trace."""
        detail = self._redact(detail)
        letter = DeadLetter.build(kind, detail, source, raw)
        await self._produce(key, letter.model_dump_json().encode(), trace.headers())
        metrics.DEAD_LETTERS.labels(kind).inc()
        log.warning(
            "message dead-lettered",
            extra={
                "kind": kind,
                "detail": detail,
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
            },
        )

    async def reject(self, kind: ErrorKind, detail: str, message: faust.types.Message) -> None:
        """Record one record of a side topic (profiles, control) that cannot be applied, in its trace."""
        source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
        trace = TraceContext.of(message.headers)
        await self.send(kind, detail, source, message.key, message.value, trace)
