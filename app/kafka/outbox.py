"""What an outcome puts on the topics: the reply, the closing chunk, the dead letter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import faust

from app.kafka.dlq import DeadLetters
from app.kafka.faust_app import Topics
from app.kafka.publisher import ChunkPublisher, Publisher
from app.observability.tracing import TraceContext
from app.pipeline import Outcome
from app.schemas import CustomerMessage, ForHuman, Handoff, SourcePosition


class Outbox:
    """Publishes one message's outcome and waits for the broker to take each durable record."""

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
        outcome: Outcome,
        trace: TraceContext,
        chunks: ChunkPublisher | None = None,
    ) -> None:
        """For a reply that was not published before and that no later message of its batch
        publishes: the closing chunk, the handoff record of a `handoff` reply, and the reply. For
        a message of a conversation a human has: its record on the handoff topic. Then the dead
        letter if there is one, and only then the reply's published mark. Each in the input's trace.

        Raises what the producer raises when the broker does not take a record.
        """
        reply, failure = outcome.reply, outcome.dead_letter
        if outcome.for_human is not None:
            await self._deliver_handoff(outcome.for_human, trace)
        publishing = reply is not None and not (outcome.published or outcome.covered)
        if reply is not None and publishing:
            if chunks is not None and not outcome.replayed:  # a replay's chunks went out the first time
                # A text not from the LLM (fallback, handoff) streams as one chunk.
                await chunks.finish(reply.text if reply.status != "ok" else None)
            if reply.status == "handoff":  # before the reply: its publish mark covers both
                await self._deliver_handoff(Handoff.of(reply), trace)
            value = reply.model_dump_json().encode()
            await self._publisher.deliver(
                self._topics.replies, reply.conversation_id.encode(), value, trace.headers()
            )
        if failure is not None:
            source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
            await self._dead_letters.send(
                failure.kind, failure.detail, source, message.key, message.value, trace
            )
        if reply is not None and publishing:
            # After the broker's acks of the reply and of its dead letter: a crash before this line
            # repeats both (the redelivery finds the reply and its failure stored), never loses one.
            await self._mark_published(reply.answers)

    async def _deliver_handoff(self, record: Handoff | ForHuman, trace: TraceContext) -> None:
        key = record.conversation_id.encode()
        value = record.model_dump_json().encode()
        await self._publisher.deliver(self._topics.handoffs, key, value, trace.headers())
