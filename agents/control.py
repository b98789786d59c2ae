"""The control agent: commands of the control topic, e.g. `release`, carried out on Redis.

Every worker of the group reads some of the topic's partitions; whichever gets a command carries it
out, as the conversation's state is in Redis, not in the worker that handed it off.
"""

from __future__ import annotations

import logging

import faust

from agents.redis_retry import until_redis_takes
from app.context import ContextStore
from app.errors import BadInput
from app.handoff import parse_command
from app.kafka.faust_app import Topics
from app.kafka.outbox import DeadLetters

log = logging.getLogger(__name__)


class ControlAgent:
    """Carries out control commands in order; bad records go to the DLQ."""

    def __init__(self, context: ContextStore, topics: Topics, dead_letters: DeadLetters) -> None:
        self._context = context
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
            await self._dead_letters.reject(error.kind, f"control: {error}", message)
            return
        # Until Redis takes it: a release skipped would leave the customer without answers.
        released = await until_redis_takes(
            lambda: self._context.release(command.conversation_id, message.timestamp),
            "control command not carried out; retrying",
        )
        log.info(
            "conversation given back to the AI" if released else "release of a conversation no human had",
            extra={"conversation_id": command.conversation_id, "command": command.command},
        )
