"""What an outcome puts on the topics: the reply, the closing chunk, the dead letter."""

from __future__ import annotations

import faust

from app.kafka.dlq import DeadLetters
from app.kafka.faust_app import Topics
from app.kafka.publisher import ChunkPublisher, Publisher
from app.pipeline import Outcome
from app.schemas import CustomerMessage, SourcePosition


class Outbox:
    """Publishes one message's outcome and waits for the broker to take each durable record."""

    def __init__(self, topics: Topics, dead_letters: DeadLetters) -> None:
        self._topics, self._dead_letters = topics, dead_letters
        self._publisher = Publisher()

    def chunks_for(self, request: CustomerMessage) -> ChunkPublisher:
        """Where the reply to `request` streams while the LLM writes it."""
        return ChunkPublisher(self._publisher, self._topics.chunks, request)

    async def publish(
        self, message: faust.types.Message, outcome: Outcome, chunks: ChunkPublisher | None = None
    ) -> None:
        """The closing chunk and the reply if there is one, then the dead letter if there is one.

        Raises what the producer raises when the broker does not take a record.
        """
        reply, failure = outcome.reply, outcome.dead_letter
        if reply is not None:
            if chunks is not None and not outcome.replayed:  # a replay's chunks went out the first time
                await chunks.finish(reply.text if reply.status == "fallback" else None)
            value = reply.model_dump_json().encode()
            await self._publisher.deliver(self._topics.replies, reply.conversation_id.encode(), value)
        if failure is not None:
            source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
            await self._dead_letters.send(failure.kind, failure.detail, source, message.key, message.value)
