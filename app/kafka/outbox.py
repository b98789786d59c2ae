"""What a fate puts on the topics: the closing chunk, the handoff records, the reply, the dead
letter, and the reply's published mark (the table in `app.fate`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import assert_never

import faust

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
from app.kafka.dlq import DeadLetters
from app.kafka.faust_app import Topics
from app.kafka.publisher import ChunkPublisher, Publisher
from app.observability.tracing import TraceContext
from app.schemas import CustomerMessage, ForHuman, Handoff, Reply, SourcePosition


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
