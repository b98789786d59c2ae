"""The control agent: commands of the control topic, e.g. `release`, carried out on Redis.

Every worker of the group reads some of the topic's partitions; whichever gets a command carries it
out, as the conversation's state is in Redis, not in the worker that handed it off.
"""

from __future__ import annotations

import logging

import faust
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_fixed

from app.errors import BadInput, ContextUnavailable
from app.handoff.control import parse_command
from app.handoff.state import release
from app.kafka.dlq import DeadLetters
from app.kafka.faust_app import Topics
from app.observability.tracing import TraceContext
from app.redis_client import RedisClient
from app.schemas import SourcePosition

log = logging.getLogger(__name__)

REDIS_RETRY_S = 1.0


class ControlAgent:
    """Carries out control commands in order; bad records go to the DLQ."""

    def __init__(self, redis: RedisClient, topics: Topics, dead_letters: DeadLetters) -> None:
        self._redis = redis
        self._topics = topics
        self._dead_letters = dead_letters

    def attach(self, app: faust.App) -> None:
        """Register the agent on the app."""
        app.agent(self._topics.control, name="control")(self._consume)

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await self.apply(event.message)

    async def apply(self, message: faust.types.Message) -> None:
        """Carry out one command, retrying while Redis is down; a record that is none to the DLQ."""
        try:
            command = parse_command(message.value)
        except BadInput as error:
            source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
            trace = TraceContext.of(message.headers)
            await self._dead_letters.send(
                error.kind, f"control: {error}", source, message.key, message.value, trace
            )
            return
        # Until Redis takes it: a release skipped would leave the customer without answers.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(ContextUnavailable),
            wait=wait_fixed(REDIS_RETRY_S),
            before_sleep=_note_retry,
        ):
            with attempt:
                released = await release(self._redis, command.conversation_id)
        log.info(
            "conversation given back to the AI" if released else "release of a conversation no human had",
            extra={"conversation_id": command.conversation_id, "command": command.command},
        )


def _note_retry(retry_state: RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    log.warning("control command not carried out; retrying", extra={"error": str(error)})
