"""Every handoff, message for the human and release, read into this worker's `HeldConversations`.

Read without a consumer group, every partition from its beginning (`topic_reader`): each worker
must see every handoff, not the share of partitions a group would give it. What is kept of them
is bounded by the set, however long the topics are.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from app.errors import BadInput
from app.handoff import HeldConversations, parse_command
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import (
    KAFKA_TIMEOUT_S,
    POLL_MS,
    consumer_from_beginning,
    read_to_end,
    stop_client,
)
from app.schemas import ForHuman, Handoff
from app.settings import Settings

log = logging.getLogger(__name__)

RETRY_S = 1.0  # after the broker failed the reader: read the topics again from their beginning


class HandoffFollower:
    """Keeps `held` current from the handoff and control topics until cancelled."""

    def __init__(self, settings: Settings, held: HeldConversations) -> None:
        self._settings = settings
        self._held = held
        self._topics = (settings.handoff_topic, settings.control_topic)

    async def run(self) -> None:
        """Read the topics to their end (then `held.caught_up` is set), and follow them; on a broker
        failure, start over from their beginning (what was applied is applied again, harmlessly)."""
        while True:
            try:
                await self._follow()
            except Exception as error:  # the broker or a topic missing: held is kept, and retried
                log.warning(
                    "handoff topics not readable; retrying",
                    extra={"error": f"{type(error).__name__}: {error}"},
                )
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        consumer = await consumer_from_beginning(
            self._settings.kafka_bootstrap_servers,
            self._topics,
            security=KafkaSecurity.from_settings(self._settings),
        )
        try:
            self._apply(await read_to_end(consumer))
            self._held.caught_up.set()
            while True:
                async with asyncio.timeout(KAFKA_TIMEOUT_S):
                    batches = await consumer.getmany(timeout_ms=POLL_MS)
                for records in batches.values():
                    self._apply(records)
        finally:
            await stop_client(consumer)

    def _apply(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            at_s = record.timestamp / 1000
            if record.topic == self._settings.control_topic:
                try:
                    self._held.released(parse_command(record.value).conversation_id, at_s)
                except BadInput:
                    continue  # the control agent dead-letters it
            elif record.value is not None:
                self._apply_handoff_record(record.value, at_s)

    def _apply_handoff_record(self, value: bytes, at_s: float) -> None:
        """A handoff record hands the conversation over; a message for the human keeps it held."""
        for model, apply in ((Handoff, self._held.handed_over), (ForHuman, self._held.active)):
            try:
                record = model.model_validate_json(value)
            except ValidationError:
                continue
            apply(record.conversation_id, at_s)
            return
