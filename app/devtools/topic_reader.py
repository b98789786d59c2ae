"""Reading whole topics without a consumer group: every partition, from its beginning.

Tansu's end offsets undercount, so readers count records instead of asking for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.devtools.polling import NotYet, poll
from app.kafka.security import PLAINTEXT, KafkaSecurity

KAFKA_TIMEOUT_S = 15.0
TOPIC_POLL_S = 0.2
FETCH_MAX_WAIT_MS = 500  # aiokafka's default


class TopicMissing(NotYet):
    """A topic to read does not exist (yet)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist")
        self.topic = topic


async def consumer_from_beginning(
    bootstrap: str,
    topics: Sequence[str],
    *,
    security: KafkaSecurity = PLAINTEXT,
    wait_s: float = 0.0,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
) -> AIOKafkaConsumer:
    """A started consumer without a group, assigned every partition of `topics` at offset 0.

    Waits up to `wait_s` for the topics to exist, then raises TopicMissing naming one that
    does not. A consumer learns every topic's metadata when it starts, so each try starts a
    new one: asking for one topic by name would auto-create it on Tansu with a default
    partition count.
    """

    async def started() -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
            **security.client_options(),
        )
        try:
            await asyncio.wait_for(consumer.start(), KAFKA_TIMEOUT_S)
            partitions: list[TopicPartition] = []
            for topic in topics:
                numbers = consumer.partitions_for_topic(topic)
                if not numbers:
                    raise TopicMissing(topic)
                partitions += [TopicPartition(topic, number) for number in sorted(numbers)]
            consumer.assign(partitions)
            await asyncio.wait_for(consumer.seek_to_beginning(*partitions), KAFKA_TIMEOUT_S)
        except BaseException:
            await asyncio.wait_for(consumer.stop(), KAFKA_TIMEOUT_S)
            raise
        return consumer

    return await poll(started, wait_s, TOPIC_POLL_S)
